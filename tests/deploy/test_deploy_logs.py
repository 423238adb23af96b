"""The job log store in the deploy files: the control worker writes the logs runners ship and web
serves them, so both must reach the SAME store. With the default (a directory), that is one volume
mounted by both at the path ADAPT_BOT_LOG_STORE names — in compose as Docker Compose itself
resolves the project, and in the rendered k8s manifests (a ReadWriteMany claim, since web runs
several replicas)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.jobs.logs import DiskLogs, parse_location
from tests.deploy import manifests as m
from tests.deploy.test_deploy_compose import _compose_config

WRITER_READER = ("web", "control-worker")


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = _compose_config(m.materialize_compose_project(tmp_path_factory.mktemp("compose-logs")))
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def _store_dir(env: dict[str, Any]) -> Path:
    store = parse_location(env.get("ADAPT_BOT_LOG_STORE"), Path("/nonexistent-data-dir"))
    assert isinstance(store, DiskLogs), store
    # the default would be under the data dir, which is the image user's tmpfs home: lost on restart
    assert not str(store.root).startswith("/nonexistent-data-dir"), "ADAPT_BOT_LOG_STORE is not set"
    return store.root


def test_compose_web_and_control_worker_share_one_log_volume(resolved: dict[str, Any]) -> None:
    mounts = {}
    for name in WRITER_READER:
        svc = resolved["services"][name]
        root = _store_dir(svc["environment"])
        (vol,) = [v for v in svc["volumes"] if v["target"] == str(root)]
        assert vol["type"] == "volume" and not vol.get("read_only"), vol
        mounts[name] = vol["source"]
    assert len(set(mounts.values())) == 1, mounts
    assert next(iter(mounts.values())) in resolved["volumes"]
    # the runner never sees it: logs reach the control plane only through the validated channel
    runner = resolved["services"]["cpu-runner"]
    assert all(v["source"] != mounts["web"] for v in runner.get("volumes", []))
    assert "ADAPT_BOT_LOG_STORE" not in runner["environment"]


def test_the_control_plane_image_owns_the_mount_point_and_has_the_s3_client() -> None:
    text = (m.DEPLOY / "Dockerfile").read_text()
    assert "install -d -o 10001 -g 10001 /var/lib/adapt-bot/logs" in text
    assert "USER 10001:10001" in text
    assert '[s3]"' in text  # boto3 for ADAPT_BOT_LOG_STORE=s3://...


def test_k8s_web_and_control_worker_mount_one_read_write_many_claim() -> None:
    claims = set()
    for name in ("adapt-bot-web", "adapt-bot-control-worker"):
        w = m.by_name("Deployment", name)
        (c,) = m.pod_spec(w)["containers"]
        root = _store_dir(m.container_env(w, c))
        (vm,) = [vm for vm in c["volumeMounts"] if vm["mountPath"] == str(root)]
        assert not vm.get("readOnly")
        vol = {v["name"]: v for v in m.pod_spec(w)["volumes"]}[vm["name"]]
        claims.add(vol["persistentVolumeClaim"]["claimName"])
    (claim,) = claims
    pvc = m.by_name("PersistentVolumeClaim", claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # web runs several replicas
    assert m.by_name("Deployment", "adapt-bot-web")["spec"]["replicas"] > 1
    for runner in m.runner_deployments():
        for c in m.pod_spec(runner)["containers"]:
            assert "ADAPT_BOT_LOG_STORE" not in m.container_env(runner, c)


def test_compose_web_keeps_its_delivery_spool_on_a_volume(resolved: dict[str, Any]) -> None:
    """Deliveries accepted while Redis was away wait in `<data_dir>/spool`: a container restart
    (restart: unless-stopped) wipes the tmpfs home, so the data dir is a named volume."""
    web = resolved["services"]["web"]
    data_dir = web["environment"]["ADAPT_BOT_DATA_DIR"]
    (vol,) = [v for v in web["volumes"] if v["target"] == data_dir]
    assert vol["type"] == "volume" and vol["source"] in resolved["volumes"]
    assert all(not data_dir.startswith(t.split(":")[0]) for t in web.get("tmpfs", []))
