"Shared test set-up."
import pytest, torch


@pytest.fixture(autouse=True)
def _cpu_defaults():
    "Every test starts and ends with torch's defaults for process-wide CPU state (denormals kept, thread count)."
    threads = torch.get_num_threads()
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(False)
    torch.set_num_threads(threads)
