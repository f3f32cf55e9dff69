#!/usr/bin/env bash
# A GPU discovery script that reports two GPUs whether or not there are any: tests device placement on
# machines without CUDA (each task must use the address Spark assigned to it, then fall back to CPU or
# fail, as configured).
echo '{"name": "gpu", "addresses": ["0", "1"]}'
