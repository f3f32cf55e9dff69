#!/usr/bin/env bash
# Spark GPU discovery script (spark.executor.resource.gpu.discoveryScript): prints the node's GPUs as
# {"name": "gpu", "addresses": ["0", "1", ...]}. Prints no addresses when nvidia-smi is absent.
set -euo pipefail
if command -v nvidia-smi >/dev/null 2>&1; then
  ids=$(nvidia-smi --query-gpu=index --format=csv,noheader | sed -e 's/^ *//' -e 's/.*/"&"/' | paste -sd, -)
else
  ids=""
fi
echo "{\"name\": \"gpu\", \"addresses\": [${ids}]}"
