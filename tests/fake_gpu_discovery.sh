#!/usr/bin/env bash
# A GPU discovery script that reports one GPU whether or not there is one: tests device placement
# on machines without CUDA (the task must pick address 0, then fall back to CPU or fail, as configured).
echo '{"name": "gpu", "addresses": ["0"]}'
