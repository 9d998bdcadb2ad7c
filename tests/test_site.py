"The offline preview of the website: pages build, math is typeset by MathJax and plots are embedded (headless Chromium)."
import os, shutil, subprocess, sys, tempfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
HAS_MATHJAX = any((Path(d) / 'MathJax.js').exists() for d in ('/usr/share/javascript/mathjax', '/usr/share/mathjax'))
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed (make debs installs it)"),
              pytest.mark.skipif(not HAS_MATHJAX, reason="Debian's libjs-mathjax is not installed (make debs installs it)")]


def _chromium(*args, timeout=120):
    with tempfile.TemporaryDirectory() as profile:
        cmd = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
               '--disable-component-update', '--disable-sync', f'--user-data-dir={profile}', '--virtual-time-budget=10000', *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    dest = tmp_path_factory.mktemp('site')
    subprocess.run([sys.executable, 'tools/site.py', '--src', 'nbs', '--dest', str(dest), '--only', 'index', '00_rnn'],
                   cwd=ROOT, check=True, capture_output=True, text=True)
    return dest


def test_pages_exist_with_embedded_plot(site):
    assert (site / 'index.html').exists()
    page = (site / 'rnn.html').read_text()
    assert 'data:image/png;base64' in page, 'the gradient plot is not embedded'
    assert 'mathjax/MathJax.js' in page and (site / 'mathjax' / 'MathJax.js').exists()
    assert 'The recurrent neural network' in page and '#| export' not in page


def test_math_is_typeset_in_chromium(site):
    dom = _chromium('--dump-dom', (site / 'rnn.html').as_uri()).stdout
    assert 'class="MathJax' in dom or 'class="mjx-' in dom, 'MathJax did not typeset the equations'
    assert '$$h_t' not in dom


def test_screenshot(site):
    png = site / 'rnn.png'
    _chromium('--window-size=1300,2400', f'--screenshot={png}', (site / 'rnn.html').as_uri())
    assert png.exists() and png.stat().st_size > 50_000
    shot = ROOT / '_site_screens'
    shot.mkdir(exist_ok=True)
    shutil.copy(png, shot / 'rnn.png')


def test_classes_read_as_classes_and_code_scrolls(site):
    import re
    page = (site / 'rnn.html').read_text()
    assert re.search(r'id="RNNCell">.{0,200}<span class="k">class</span><span class="w"> </span><span class="nc">RNNCell', page)   # show_doc
    assert not re.search(r'<span class="k">def</span><span class="w"> </span><span class="nf">[A-Z]', page)   # not fastcore's `def RNNCell(...)->None`
    assert 'overflow-x: auto' in page                                                                 # long code lines scroll
