#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image (Ubuntu, as root): a venv with the bundled
# bpfhol wheel.  The grader needs nothing else here: the scripts run on the lab VMs, over SSH.
set -euo pipefail
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-venv
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install -q /autograder/source/bpfhol-*.whl
chmod 600 /autograder/source/keys/* 2>/dev/null || true
