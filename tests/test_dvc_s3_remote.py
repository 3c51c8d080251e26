"""An S3 DVC remote (docs/cluster.md), against a real S3 API on 127.0.0.1.

moto's server (``moto_server``, the S3 and IAM APIs in one process) runs with its credential
checks on: the first requests create an IAM user, its access key and the bucket, after which
every request must be signed with that key, as on AWS. The tiny project (tests/tiny_project.py)
is configured as docs/cluster.md says (``dvc remote add`` with ``endpointurl``, the keys in
the environment), its outputs pushed, the cache deleted and pulled back; an experiment
travels through a bare git remote plus the bucket to a second clone (``dvc exp push`` /
``dvc exp pull``); and a push with a wrong key is one message that loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_project import BIN, DVC, GIT, env, free_port, link_venv, make_project, run, stop

BUCKET = "ssd-data"
# The requests moto serves before it checks signatures: create_user, create_access_key,
# put_user_policy, create_bucket (moto's INITIAL_NO_AUTH_ACTION_COUNT).
SETUP_REQUESTS = 4


def _wait_port(port: int, timeout: float) -> None:
    """Until something listens on ``port`` (a TCP connect, not a request: moto counts
    requests towards SETUP_REQUESTS)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"moto_server did not listen on 127.0.0.1:{port} within {timeout} s")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    moto_env = {"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS), "PATH": "/usr/bin:/bin"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            env=moto_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_port(port, 60)
        anyone = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", **anyone)
        iam.create_user(UserName="ssd-ci")
        key = iam.create_access_key(UserName="ssd-ci")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="ssd-ci", PolicyName="s3", PolicyDocument=json.dumps(policy))
        creds = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_bucket(Bucket=BUCKET)
        yield {"endpoint": endpoint, **creds}
    finally:
        stop(proc)


def _objects(s3: dict[str, str]) -> list[str]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3["endpoint"],
        region_name="us-east-1",
        aws_access_key_id=s3["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3["AWS_SECRET_ACCESS_KEY"],
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _creds(s3: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in s3.items() if k.startswith("AWS_")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, s3: dict[str, str]) -> Path:
    """The tiny project, trained (prepare and train), its S3 remote set as docs/cluster.md
    says and committed, and a bare git repository as its origin."""
    project = tmp_path_factory.mktemp("s3") / "project"
    project.mkdir()
    make_project(project)
    run([DVC, "repro", "train"], project)
    run([DVC, "remote", "add", "--default", "storage", f"s3://{BUCKET}/ssd"], project)
    run([DVC, "remote", "modify", "storage", "endpointurl", s3["endpoint"]], project)
    run([*GIT, "add", "-A"], project)
    run([*GIT, "commit", "-qm", "trained, S3 remote"], project)
    origin = project.parent / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], project)
    run(["git", "remote", "add", "origin", str(origin)], project)
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], project)
    return project


MODEL = Path("models/synthetic/ssd/model.safetensors")


def test_outputs_round_trip_through_the_bucket(trained: Path, s3: dict[str, str]) -> None:
    project = trained
    model = _sha(project / MODEL)
    out = run([DVC, "push"], project, extra=_creds(s3))
    assert "pushed" in out, out
    stored = _objects(s3)
    assert any(key.startswith("ssd/files/md5/") for key in stored), stored
    # as on a new machine: no cache, no outputs; everything comes back from the bucket
    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(project / "models")
    shutil.rmtree(project / "data" / "prepared")
    print(out, run([DVC, "pull", "--with-deps", "train"], project, extra=_creds(s3)))
    assert _sha(project / MODEL) == model
    assert json.loads(run([DVC, "status", "train", "--json"], project)) == {}


def test_an_experiment_travels_to_another_clone(
    trained: Path, s3: dict[str, str], tmp_path: Path
) -> None:
    project = trained
    run([DVC, "exp", "run", "train", "--set-param", "train.seed=5", "--name", "seed5"], project)
    experiment = _sha(project / MODEL)
    out = run([DVC, "exp", "push", "origin", "seed5"], project, extra=_creds(s3))
    assert "seed5" in out, out

    clone = tmp_path / "clone"
    run(
        ["git", "clone", "-q", "--branch", "main", str(project.parent / "origin.git"), str(clone)],
        tmp_path,
    )
    link_venv(clone)
    print(out, run([DVC, "exp", "pull", "origin", "seed5"], clone, extra=_creds(s3)))
    assert "seed5" in run([DVC, "exp", "list", "--name-only"], clone)
    # its commit as a branch, its outputs from what exp pull fetched from the bucket (only
    # prepare and train ran here, so check out those, not `dvc exp apply`'s every stage)
    run([DVC, "exp", "branch", "seed5", "from-seed5"], clone)
    run(["git", "checkout", "-q", "from-seed5"], clone)
    run([DVC, "checkout", "--with-deps", "train"], clone)
    assert _sha(clone / MODEL) == experiment


def test_a_wrong_key_is_one_message_and_loses_nothing(trained: Path, s3: dict[str, str]) -> None:
    """``make push`` (``python -m pipelines.remote``) with a wrong secret: exit code 1, one
    line on stderr naming the remote, the cause and the fix, nothing sent or changed; the
    flow's push task calls the same ``push``."""
    from pipelines.remote import push

    project = trained
    model = _sha(project / MODEL)
    (project / "notes.txt").write_text("a new output to push\n")
    run([DVC, "add", "notes.txt"], project)
    wrong = _creds(s3) | {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    p = subprocess.run(
        [str(BIN / "python"), "-m", "pipelines.remote"],
        cwd=project,
        env=env(project) | wrong,
        capture_output=True,
        text=True,
        timeout=300,
    )
    message = p.stderr.strip()
    print(message)
    assert p.returncode == 1, p.stdout + p.stderr
    assert message.count("\n") == 0 and message.startswith("error: `dvc push` failed"), message
    assert p.stdout.strip() == "", p.stdout  # DVC's own error and footer are not said again
    assert f"the DVC remote 'storage' (s3://{BUCKET}/ssd) refused the credentials" in message
    assert "AWS_SECRET_ACCESS_KEY" in message and "nothing is lost" in message
    assert _sha(project / MODEL) == model  # the workspace and its cache are as they were
    assert not any(key.endswith("notes.txt") for key in _objects(s3))

    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        for k, v in _creds(s3).items():
            mp.setenv(k, v)
        push(project, log=lines.append)  # fixed: the same push goes through, its output said
    assert any("pushed" in line for line in lines), lines
    pushed = run([DVC, "status", "--cloud"], project, extra=_creds(s3))
    assert "Cache and remote 'storage' are in sync" in pushed, pushed
