#!/usr/bin/env bash
# Author a chapter as a jupytext percent-format draft and turn it into nbs/NAME.ipynb (the draft stays outside
# the repository: the notebook is the source). usage: tools/nb.sh draft.py nbs/NAME.ipynb
set -euo pipefail
.venv/bin/jupytext --quiet --to ipynb --set-kernel python3 -o "$2" "$1"
.venv/bin/python - "$2" <<'PY'
import json, sys
p = sys.argv[1]; nb = json.load(open(p))
nb['metadata'].pop('jupytext', None)
for c in nb['cells']: c['metadata'] = {}
json.dump(nb, open(p, 'w'), indent=1, ensure_ascii=False); open(p, 'a').write('\n')
PY
.venv/bin/nbdev_clean --fname "$2"
