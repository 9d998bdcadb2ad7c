"""Execute notebooks the way `nbdev_test` does (skipping `#| eval: false` cells and cells flagged with
`tst_flags`), keeping their outputs. `--dest DIR` writes executed copies there; without it the notebooks are
updated in place (then run `nbdev_clean`)."""
import argparse, os, sys, time
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from nbdev.config import get_config
from nbdev.process import extract_directives


def run_nb(src: Path, dest: Path, skip_flags=()):
    "Execute `src` in its own folder and write it with outputs to `dest`."
    flags = set(skip_flags)
    nb = read_nb(src)

    def _skip(cell):
        if cell.cell_type != 'code': return True
        direc = extract_directives(cell, remove=False)
        if direc.get('eval:', [''])[0].lower() == 'false': return True
        return flags & direc.keys()

    for cell in nb.cells:                                   # a cell that now prints nothing must not keep its old output
        if cell.cell_type == 'code': cell.outputs, cell.execution_count = [], None
    shell = CaptureShell(src)
    cwd = os.getcwd()
    os.chdir(src.parent)
    try: shell.run_all(nb, exc_stop=True, preproc=_skip)
    finally: os.chdir(cwd)
    write_nb(nb, dest)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('notebooks', nargs='+', type=Path)
    p.add_argument('--dest', type=Path, default=None, help='folder for executed copies (default: in place)')
    p.add_argument('--flags', default='', help='tst_flags to run too (default: none of them run)')
    a = p.parse_args()
    os.environ.setdefault('MPLBACKEND', 'Agg')
    skip = set(get_config().get('tst_flags', '').split('|')) - set(a.flags.split('|')) - {''}
    if a.dest: a.dest.mkdir(parents=True, exist_ok=True)
    for nb in a.notebooks:
        t = time.time()
        run_nb(nb.resolve(), (a.dest / nb.name if a.dest else nb).resolve(), skip)
        print(f'{nb}: {time.time() - t:.1f}s', flush=True)


if __name__ == '__main__': main()
