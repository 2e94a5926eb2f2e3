#!/usr/bin/env python3
"""A stand-in for `inference-perf` that checks how llmd hands it paths.

Invoked as `inference-perf --config_file PATH`, it fails (exit 3, reason on stderr)
unless: the config path is absolute and exists; the working directory is the results
directory, which the config's storage path names absolutely; the tokenizer path in the
config is absolute and holds tokenizer.json; HF_HUB_OFFLINE=1. Then it writes the
summary file real inference-perf writes (a copy of $STANDIN_SUMMARY) into the storage
path and appends its argv and working directory, as JSON, to $STANDIN_LOG.
"""

import json
import os
import shutil
import sys

import yaml


def fail(why):
    print(f"inference-perf stand-in: {why}", file=sys.stderr)
    sys.exit(3)


def main():
    args = sys.argv[1:]
    if len(args) != 2 or args[0] != "--config_file":
        fail(f"expected --config_file PATH, got {args}")
    cfg_path = args[1]
    if not os.path.isabs(cfg_path):
        fail(f"config path is relative: {cfg_path}")
    if not os.path.isfile(cfg_path):
        fail(f"config file does not exist: {cfg_path}")
    with open(cfg_path) as f:
        cfg = yaml.safe_load(f)
    storage = cfg["storage"]["local_storage"]["path"]
    if not os.path.isabs(storage):
        fail(f"storage path is relative: {storage}")
    if os.path.realpath(storage) != os.path.realpath(os.getcwd()):
        fail(f"storage path {storage} is not the working directory {os.getcwd()}")
    tokenizer = cfg["tokenizer"]["pretrained_model_name_or_path"]
    if not os.path.isabs(tokenizer) or not os.path.isfile(os.path.join(tokenizer, "tokenizer.json")):
        fail(f"tokenizer path is not an absolute tokenizer directory: {tokenizer}")
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        fail("HF_HUB_OFFLINE is not 1")
    shutil.copy(os.environ["STANDIN_SUMMARY"], os.path.join(storage, "summary_lifecycle_metrics.json"))
    with open(os.environ["STANDIN_LOG"], "a") as log:
        log.write(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "storage": storage, "tokenizer": tokenizer}) + "\n")


if __name__ == "__main__":
    main()
