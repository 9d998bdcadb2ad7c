"""Write README.md from nbs/index.ipynb (what `nbdev_readme` does with Quarto, done here with nbconvert)."""
import re, sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

def main(src='nbs/index.ipynb', dest='README.md'):
    nb = nbformat.read(src, as_version=4)
    cells = []
    for c in nb.cells:
        directives = [l.lstrip('#| ').strip() for l in c.source.splitlines() if l.lstrip().startswith('#|')]
        if c.cell_type == 'code' and 'hide' in directives: continue
        c.source = '\n'.join(l for l in c.source.splitlines() if not l.lstrip().startswith('#|'))
        c.metadata = {}
        if c.cell_type == 'code' and any(d.replace(' ', '') == 'echo:false' for d in directives): c.metadata = {'transient': {'remove_source': True}}
        cells.append(c)
    nb.cells = cells
    nb.metadata['language_info'] = {'name': 'python'}
    md, _ = MarkdownExporter(exclude_output_prompt=True, exclude_input_prompt=True).from_notebook_node(nb)
    md = re.sub(r'\]\(([\w-]+)\.ipynb\)', r'](nbs/\1.ipynb)', md)
    md = re.sub(r'<style scoped>.*?</style>\s*', '', md, flags=re.S)
    md = re.sub(r'\n{3,}', '\n\n', md)
    md = re.sub(r'^> (.*)$', r'*\1*', md, count=1, flags=re.M)
    Path(dest).write_text('<!-- generated from nbs/index.ipynb by tools/readme.py: edit the notebook -->\n\n' + md.strip() + '\n')

if __name__ == '__main__': main(*sys.argv[1:])
