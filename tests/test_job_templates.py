"""The Docker and Kubernetes base job templates (pipelines/job_templates/, docs/cluster.md).

No Docker daemon or Kubernetes cluster runs here, so what is checked is what can be without
one: a real Prefect server accepts each template for a pool of its type, and Prefect's own
templating renders a deployment's job variables into the places a pod or container needs
them (the GPU request, the shared project volume, the working folder, the image). Whether a
cluster then runs the job was NOT tested (docs/cluster.md says so).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from prefect.utilities.templating import apply_values
from tiny_project import BIN, REPO, env, free_port, prefect_server

TEMPLATES = REPO / "pipelines" / "job_templates"


def _render(kind: str, job_variables: dict) -> dict:
    """The job configuration a worker of ``kind`` builds for a deployment: the template's
    variable defaults, the deployment's job variables over them (as Prefect merges them)."""
    template = json.loads((TEMPLATES / f"{kind}.json").read_text())
    values = {
        name: spec["default"]
        for name, spec in template["variables"]["properties"].items()
        if "default" in spec
    } | job_variables
    rendered: dict = apply_values(template["job_configuration"], values)
    return rendered


def test_the_kubernetes_pod_asks_for_gpus_and_mounts_the_shared_project() -> None:
    job = _render(
        "kubernetes",
        {"gpu_count": 4, "pod_labels": {"ssd-rdzv": "node0"}, "image": "registry/ssd:abc"},
    )
    pod = job["job_manifest"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "registry/ssd:abc"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert container["workingDir"] == "/project"
    assert {"name": "project", "mountPath": "/project"} in container["volumeMounts"]
    claims = [v for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [{"name": "project", "persistentVolumeClaim": {"claimName": "ssd-project"}}]
    assert pod["metadata"]["labels"] == {"ssd-rdzv": "node0"}  # a Service can select node 0
    assert container["env"]["DO_NOT_TRACK"] == "true"  # telemetry off in the pod too


def test_the_docker_container_gets_the_gpus_the_project_and_shared_memory() -> None:
    job = _render("docker", {"gpu_count": 2})
    kwargs = job["container_create_kwargs"]
    assert kwargs["device_requests"][0]["Count"] == 2
    assert kwargs["device_requests"][0]["Capabilities"] == [["gpu"]]
    assert kwargs["working_dir"] == "/project" and kwargs["shm_size"] == "8g"
    assert job["volumes"] == ["ssd-project:/project"] and job["image"] == "ssd:latest"


def test_a_prefect_server_accepts_each_template_for_a_pool_of_its_type(tmp_path: Path) -> None:
    port = free_port()
    environ = env(tmp_path) | {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}

    def prefect(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "prefect"), *args],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )

    with prefect_server(port, tmp_path, environ, tmp_path / "server.log"):
        for kind in ("kubernetes", "docker"):
            template = str(TEMPLATES / f"{kind}.json")
            p = prefect(
                "work-pool",
                "create",
                f"ssd-{kind}",
                "--type",
                kind,
                "--base-job-template",
                template,
            )
            assert p.returncode == 0, p.stdout + p.stderr
            p = prefect("work-pool", "inspect", f"ssd-{kind}")
            assert p.returncode == 0 and "gpu_count" in p.stdout, p.stdout + p.stderr
        # the server checks a template: a placeholder without its variable is refused
        broken = json.loads((TEMPLATES / "kubernetes.json").read_text())
        del broken["variables"]["properties"]["gpu_count"]
        (tmp_path / "broken.json").write_text(json.dumps(broken))
        p = prefect(
            "work-pool",
            "create",
            "broken",
            "--type",
            "kubernetes",
            "--base-job-template",
            str(tmp_path / "broken.json"),
        )
        assert p.returncode != 0, p.stdout + p.stderr
        assert "gpu_count" in p.stdout + p.stderr, p.stdout + p.stderr
