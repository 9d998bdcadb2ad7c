"What `pip install adaptive_rnn` brings: the runtime requirements only, never the notebook tool chain."
from configparser import ConfigParser
from pathlib import Path
import re, subprocess, sys

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = {'torch', 'numpy', 'scipy', 'matplotlib', 'seaborn', 'pandas', 'tqdm'}


def _cfg():
    c = ConfigParser(delimiters=['=']); c.read(ROOT / 'settings.ini', encoding='utf-8')
    return c['DEFAULT']


def _names(reqs): return {re.split(r'[<>=!~\[ ]', r, maxsplit=1)[0].lower() for r in reqs.split()}


def test_runtime_requirements_are_the_documented_ones():
    assert _names(_cfg()['requirements']) == RUNTIME


def test_dev_stack_is_pinned_together():
    dev = _cfg()['dev_requirements'].split()
    for pin in ('nbdev>=2.4.14,<3', 'fastcore>=1.12.3,<2', 'execnb>=0.1.12,<0.2'): assert pin in dev
    assert not _names(_cfg()['requirements']) & {'nbdev', 'jupyter', 'fastcore', 'execnb', 'nbconvert'}


def test_library_imports_nothing_from_the_dev_stack():
    "Every module imports with the development tools absent (they may be imported inside a function that needs them)."
    for py in (ROOT / 'adaptive_rnn').glob('*.py'):
        src = py.read_text()
        for mod in ('fastcore', 'nbdev', 'execnb', 'IPython', 'mlxtend'):
            assert not re.search(rf'^(from|import)\s+{mod}\b', src, flags=re.M), f'{py.name} imports {mod} at module level'
    blocked = ('fastcore', 'nbdev', 'execnb', 'IPython', 'mlxtend', 'submitit')
    code = ("import sys, importlib, pkgutil\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        if name.split('.')[0] in {blocked!r}: raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import adaptive_rnn\n"
            "for m in pkgutil.iter_modules(adaptive_rnn.__path__): importlib.import_module('adaptive_rnn.' + m.name)\n"
            "from adaptive_rnn import SkipLSTM, fit, sweep\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
