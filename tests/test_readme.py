"The README's example runs as printed."
import re
from pathlib import Path

def test_readme_example_runs():
    text = (Path(__file__).parent.parent / 'README.md').read_text()
    blocks = re.findall(r'```python\n(.*?)```', text, flags=re.S)
    assert any('from adaptive_rnn' in b or 'import adaptive_rnn' in b for b in blocks), 'the README has no example that imports adaptive_rnn'
    namespace = {}
    for b in blocks: exec(compile(b, 'README.md', 'exec'), namespace)      # the blocks in order, as a reader runs them
    assert 'skip' in namespace and namespace['out'].updates.shape == (2, 50)
