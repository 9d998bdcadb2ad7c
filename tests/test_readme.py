"The README's example runs as printed."
import re
from pathlib import Path

def test_readme_example_runs():
    text = (Path(__file__).parent.parent / 'README.md').read_text()
    blocks = re.findall(r'```python\n(.*?)```', text, flags=re.S)
    code = [b for b in blocks if 'import adaptive_rnn' in b or 'from adaptive_rnn' in b]
    assert code, 'the README has no example that imports adaptive_rnn'
    for b in code: exec(compile(b, 'README.md', 'exec'), {})
