"""Builds the local test images, their lock files and the tiny model (scripts/build_images.py is the entry point).

Standard library only: it runs under the system python3 before any venv exists.

    common     repo layout, BuildError, the stderr log, phase timer, the per-checkout lock
    specs      images/versions.env -> typed image specs and their content-hash tags
    hashing    the content hash behind every tag
    wheels     wheel-file sets, PEP 503 names, pip download commands, the per-image wheel cache
    locks      images/<name>/requirements.lock: read, write, check, re-resolve
    fetch      the one download -> verify -> stamp -> publish sequence
    docker     the one subprocess seam (run, docker queries, BuildKit client)
    build      the base image and the app images
    tiny_model the tiny model (and the peft wheels it needs)
    cli        argparse and the stdout contract
"""
