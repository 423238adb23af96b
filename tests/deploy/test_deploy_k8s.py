"""deploy/k8s: rendered with kubectl's kustomize, schema-checked against the real Kubernetes JSON
schemas (kubernetes-validate ships them), then cross-checked against the bot: runner pools, driver
mounts, env names, and that no GitHub credential reaches a pod that runs model code."""

from __future__ import annotations

import copy
import json
import shlex
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy import manifests as m
from tests.deploy.test_deploy_compose import RUNNER_ENV

#: Oldest Kubernetes the manifests promise to work on, and the newest schemas shipped.
K8S_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]


def _ids(objs: tuple[dict[str, Any], ...]) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objs]


def test_every_manifest_file_is_in_the_kustomization_and_renders() -> None:
    listed = set(m.kustomization()["resources"])
    on_disk = {p.name for p in m.K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == on_disk, f"listed only: {listed - on_disk}; on disk only: {on_disk - listed}"
    from_files = sum(len(m.load_yaml_docs(m.K8S / name)) for name in listed)
    assert len(m.rendered_k8s()) == from_files


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_rendered_objects_pass_the_strict_kubernetes_schemas(version: str) -> None:
    failures = []
    for obj in m.rendered_k8s():
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            failures.append(exc.message)
    assert not failures, "\n".join(failures)


def test_the_schema_check_catches_a_misspelled_field() -> None:
    """The strict schemas reject what a typo would silently drop (kubectl would too, server-side)."""
    runner = copy.deepcopy(m.runner_deployments()[0])
    m.pod_spec(runner)["terminationGracePeriodSecond"] = 900
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(runner, K8S_VERSIONS[-1], strict=True)


def test_no_secret_values_are_committed() -> None:
    assert not m.objects("Secret"), "Secrets are created by the operator (deploy/README.md), never committed"


def test_everything_lives_in_one_namespace_with_the_part_of_label() -> None:
    for obj in m.rendered_k8s():
        if obj["kind"] == "Namespace":
            continue
        assert obj["metadata"].get("namespace") == "adapt-bot", obj["metadata"]["name"]
    for w in m.workloads():
        labels = w["spec"]["template"]["metadata"]["labels"]
        # The Redis NetworkPolicy admits pods by this label.
        assert labels.get("app.kubernetes.io/part-of") == "adapt-bot", w["metadata"]["name"]


# --------------------------------------------------------------------------- redis


def test_redis_persists_with_append_only_on_a_volume_claim() -> None:
    sts = m.by_name("StatefulSet", "adapt-bot-redis")
    (container,) = m.pod_spec(sts)["containers"]
    argv = [*container.get("command", []), *container.get("args", [])]
    assert argv[argv.index("--appendonly") + 1] == "yes"
    data_dir = argv[argv.index("--dir") + 1]
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    mounted = {vm["mountPath"]: vm["name"] for vm in container["volumeMounts"]}
    assert mounted.get(data_dir) in claims, f"{data_dir} is not on a PersistentVolumeClaim"
    probe = " ".join(container["readinessProbe"]["exec"]["command"])
    assert "redis-cli" in probe and "--user adapt-control" in probe  # the default user is off


def test_redis_loads_the_acl_users_from_a_secret() -> None:
    sts = m.by_name("StatefulSet", "adapt-bot-redis")
    (container,) = m.pod_spec(sts)["containers"]
    argv = [*container.get("command", []), *container.get("args", [])]
    aclfile = argv[argv.index("--aclfile") + 1]
    mounts = {vm["name"]: vm["mountPath"] for vm in container["volumeMounts"]}
    volumes = {v["name"]: v for v in m.pod_spec(sts)["volumes"]}
    (acl_volume,) = [n for n, path in mounts.items() if aclfile.startswith(path + "/")]
    assert volumes[acl_volume]["secret"]["secretName"] == "adapt-bot-redis-acl"


def test_configured_redis_url_points_at_the_redis_service_as_the_right_user() -> None:
    svc = m.by_name("Service", "adapt-bot-redis")
    port = svc["spec"]["ports"][0]["port"]
    url = m.by_name("ConfigMap", "adapt-bot-config")["data"]["ADAPT_BOT_REDIS_URL"]
    assert url == f"redis://adapt-control@adapt-bot-redis:{port}/0"
    assert "ADAPT_BOT_REDIS_URL" not in m.by_name("ConfigMap", "adapt-bot-runner-env")["data"]
    for pool in ("a2-8", "a3-16"):
        d, c = _runner(pool)
        env = m.container_env(d, c)
        assert env["ADAPT_BOT_REDIS_URL"] == f"redis://runner-{pool}@adapt-bot-redis:{port}/0"
        password = env["ADAPT_BOT_REDIS_PASSWORD_FILE"]
        # the file is the pool's own Secret, mounted where the variable says
        mounts = {vm["mountPath"]: vm["name"] for vm in c["volumeMounts"]}
        volume = mounts[password.rsplit("/", 1)[0]]
        secret = {v["name"]: v for v in m.pod_spec(d)["volumes"]}[volume]["secret"]["secretName"]
        assert secret == f"adapt-bot-redis-runner-{pool}" and password.endswith(f"runner-{pool}.password")
    served = set(json.loads(m.by_name("ConfigMap", "adapt-bot-config")["data"]["ADAPT_BOT_RUNNER_POOLS"]))
    assert served == {"a2-8", "a3-16"}


# --------------------------------------------------------------------------- services and selectors


def test_every_service_and_policy_selects_a_pod_and_named_ports_exist() -> None:
    pods = [w["spec"]["template"] for w in m.workloads()]

    def matching(selector: dict[str, str]) -> list[dict[str, Any]]:
        return [p for p in pods if selector.items() <= p["metadata"]["labels"].items()]

    for svc in m.objects("Service"):
        selected = matching(svc["spec"]["selector"])
        assert selected, f"Service {svc['metadata']['name']} selects no pod"
        containers = [c for pod in selected for c in pod["spec"]["containers"]]
        port_names = {p.get("name") for c in containers for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort")
            if isinstance(target, str):
                assert target in port_names, f"{svc['metadata']['name']}: no container port named {target}"
    for pol in m.objects("NetworkPolicy"):
        assert matching(pol["spec"]["podSelector"]["matchLabels"]), pol["metadata"]["name"]
    for pdb in m.objects("PodDisruptionBudget"):
        assert matching(pdb["spec"]["selector"]["matchLabels"]), pdb["metadata"]["name"]


def test_ingress_routes_the_webhook_and_pages_to_the_web_service() -> None:
    (ing,) = m.objects("Ingress")
    paths = [p for rule in ing["spec"]["rules"] for p in rule["http"]["paths"]]
    # the webhook and the jobs pages (with their GitHub sign-in), never /metrics
    assert [p["path"] for p in paths] == ["/webhook", "/jobs", "/api/jobs", "/login", "/callback", "/logout"]
    for path in paths:
        backend = path["backend"]["service"]
        svc = m.by_name("Service", backend["name"])
        assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
        assert backend["port"]["name"] != "metrics"


def test_web_probes_healthz_and_serves_on_the_port_it_declares() -> None:
    web = m.by_name("Deployment", "adapt-bot-web")
    (c,) = m.pod_spec(web)["containers"]
    args = m.parse_cli(c["args"])
    assert args.command == "serve"
    assert c["args"] == ["serve", "--host", "0.0.0.0", "--port", "8080", "--no-worker"]
    # A control worker per web replica would make several writers to GitHub; one Deployment runs it.
    assert args.no_worker is True
    assert c["ports"][0]["containerPort"] == 8080
    # /metrics on its own port, which no Service publishes
    (metrics,) = [p for p in c["ports"] if p["name"] == "metrics"]
    assert m.container_env(web, c)["ADAPT_BOT_METRICS_BIND"].endswith(f":{metrics['containerPort']}")
    assert all(p["targetPort"] != "metrics" for s in m.objects("Service") for p in s["spec"]["ports"])
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/healthz"
    scrape = web["spec"]["template"]["metadata"]["annotations"]
    assert scrape["prometheus.io/path"] == "/metrics"
    assert int(scrape["prometheus.io/port"]) == metrics["containerPort"]


# --------------------------------------------------------------------------- control plane


def test_only_the_control_worker_holds_the_app_key() -> None:
    holders = {
        w["metadata"]["name"]
        for w in m.workloads()
        for c in m.pod_spec(w)["containers"]
        if "ADAPT_BOT_PRIVATE_KEY" in m.container_env(w, c)
        or any("private-key" in r or ("adapt-bot-github" in r and "volume" in r) for r in m.secret_refs(w))
    }
    assert holders == {"adapt-bot-control-worker"}
    web = m.by_name("Deployment", "adapt-bot-web")
    assert m.secret_refs(web) == [
        "env ADAPT_BOT_WEBHOOK_SECRET <- secret adapt-bot-github",
        "volume redis-password <- secret adapt-bot-redis-control",
    ]


def test_control_worker_reads_the_key_as_a_mounted_file() -> None:
    w = m.by_name("Deployment", "adapt-bot-control-worker")
    (c,) = m.pod_spec(w)["containers"]
    env = m.container_env(w, c)
    key_path = env["ADAPT_BOT_PRIVATE_KEY"]
    assert key_path and key_path.startswith("/")
    mounts = {vm["name"]: vm for vm in c["volumeMounts"]}
    vols = {v["name"]: v for v in m.pod_spec(w)["volumes"]}
    hits = [
        vm
        for vm in mounts.values()
        if "secret" in vols[vm["name"]]
        and any(
            key_path == f"{vm['mountPath'].rstrip('/')}/{item['path']}"
            for item in vols[vm["name"]]["secret"].get("items", [])
        )
    ]
    assert hits and all(vm.get("readOnly") for vm in hits), f"{key_path} is not a read-only secret file mount"
    assert m.pod_spec(w)["securityContext"]["runAsNonRoot"] is True


def test_control_worker_runs_the_control_queue_as_the_single_writer() -> None:
    w = m.by_name("Deployment", "adapt-bot-control-worker")
    (c,) = m.pod_spec(w)["containers"]
    assert c["args"] == ["worker", "--control"]
    m.parse_cli(c["args"])
    assert w["spec"]["replicas"] == 1
    assert w["spec"]["strategy"]["type"] == "Recreate"


# --------------------------------------------------------------------------- env names


def test_every_adapt_bot_variable_a_pod_gets_is_one_the_bot_reads() -> None:
    known = m.bot_env_names()
    unknown = []
    for w in m.workloads():
        for c in m.pod_spec(w)["containers"]:
            for name in m.adapt_bot_names(m.container_env(w, c)) - known:
                unknown.append(f"{w['metadata']['name']}: {name}")
    for cm in m.objects("ConfigMap"):
        for name in m.adapt_bot_names(cm.get("data", {})) - known:
            unknown.append(f"ConfigMap {cm['metadata']['name']}: {name}")
    assert not unknown, "set but never read by the bot (typo?):\n" + "\n".join(unknown)


def test_no_pod_gets_service_link_variables() -> None:
    """Service links would inject ADAPT_BOT_REDIS_PORT=tcp://... and friends into the bot's prefix."""
    for w in m.workloads():
        if w["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "redis":
            continue
        assert m.pod_spec(w).get("enableServiceLinks") is False, w["metadata"]["name"]


# --------------------------------------------------------------------------- runners


def _runner(pool: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for d in m.runner_deployments():
        if m.pool_of(d) == pool:
            (c,) = m.pod_spec(d)["containers"]
            return d, c
    raise KeyError(pool)


def test_jobs_are_routed_to_pools_the_cluster_runs() -> None:
    w = m.by_name("Deployment", "adapt-bot-control-worker")
    (c,) = m.pod_spec(w)["containers"]
    pools = m.default_pools(m.container_env(w, c))
    consumed = m.consumed_queues(
        [c.get("args", []) for d in m.workloads() for c in m.pod_spec(d)["containers"]]
    )
    assert pools <= consumed, f"jobs go to {pools}; runner workers consume {consumed}"
    assert "control" in consumed


def test_runner_pools_match_the_example_repo_config() -> None:
    example = yaml.safe_load(m.EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    assert {m.pool_of(d) for d in m.runner_deployments()} == set(example["pools"].values())


@pytest.mark.parametrize("pool", ["a2-8", "a3-16"])
def test_runner_consumes_its_pool_queue_on_its_labelled_nodes(pool: str) -> None:
    d, c = _runner(pool)
    args = m.parse_cli(c["args"])
    assert args.command == "worker"
    assert c["args"] == ["worker", "--pool", pool], shlex.join(c["args"])
    assert m.pod_spec(d)["nodeSelector"] == {m.POOL_LABEL: pool}
    assert d["spec"]["selector"]["matchLabels"][m.POOL_LABEL] == pool
    # A new pod cannot get the NPUs while the old one holds them.
    assert d["spec"]["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize("pool", ["a2-8", "a3-16"])
def test_runner_requests_the_pools_npus_and_the_profile_leases_as_many(pool: str) -> None:
    from runners.profile import load_profile

    _d, c = _runner(pool)
    npus = int(pool.rsplit("-", 1)[1])
    res = c["resources"]
    assert int(res["requests"][m.NPU_RESOURCE]) == npus
    assert int(res["limits"][m.NPU_RESOURCE]) == npus
    example = yaml.safe_load(m.EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    hardware = next(hw for hw, p in example["pools"].items() if p == pool)
    profile = load_profile(example["profiles"][hardware])
    assert len(profile.devices.pool) == npus, (
        f"profile {profile.name} leases {len(profile.devices.pool)} devices, pod gets {npus}"
    )
    # The A3 pool runs the `-a3` build of vllm-ascend (reference §7).
    assert c["image"].endswith(f"-{hardware}"), c["image"]


@pytest.mark.parametrize("pool", ["a2-8", "a3-16"])
def test_runner_mounts_the_ascend_driver_files_read_only(pool: str) -> None:
    d, c = _runner(pool)
    vols = {v["name"]: v for v in m.pod_spec(d)["volumes"]}
    host = {}
    for vm in c["volumeMounts"]:
        hp = vols[vm["name"]].get("hostPath")
        if hp and hp["path"] in m.ASCEND_DRIVER_MOUNTS:
            assert vm["mountPath"] == hp["path"], f"{hp['path']} mounted at {vm['mountPath']}"
            assert vm.get("readOnly") is True, hp["path"]
            host[hp["path"]] = hp["type"]
    assert host == m.ASCEND_DRIVER_MOUNTS


@pytest.mark.parametrize("pool", ["a2-8", "a3-16"])
def test_runner_has_models_shared_memory_and_time_to_tear_down(pool: str) -> None:
    d, c = _runner(pool)
    spec = m.pod_spec(d)
    vols = {v["name"]: v for v in spec["volumes"]}
    mounts = {vm["mountPath"]: vols[vm["name"]] for vm in c["volumeMounts"]}
    assert "/models" in mounts
    assert mounts["/dev/shm"]["emptyDir"]["medium"] == "Memory"
    # The profile's ready timeout alone can be 30 min; SIGTERM must leave a gate time to stop its server.
    assert spec["terminationGracePeriodSeconds"] >= 600
    # The pause container reaps server processes a killed stage leaves behind.
    assert spec["shareProcessNamespace"] is True


@pytest.mark.parametrize("pool", ["a2-8", "a3-16"])
def test_runner_env_is_the_reference_set_and_agrees_with_the_profile(pool: str) -> None:
    from runners.profile import load_profile

    d, c = _runner(pool)
    env = m.container_env(d, c)
    for key, value in m.ASCEND_COMMON_ENV.items():
        assert env.get(key) == value, f"{key}={env.get(key)!r}"
    # The device plugin (and the bot's own lease, per job) decide device visibility.
    assert "ASCEND_RT_VISIBLE_DEVICES" not in env
    assert "ASCEND_VISIBLE_DEVICES" not in env
    example = yaml.safe_load(m.EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    hardware = next(hw for hw, p in example["pools"].items() if p == pool)
    profile = load_profile(example["profiles"][hardware])
    for key in m.ASCEND_COMMON_ENV:
        assert profile.serve.env.get(key) == env[key], f"pod and profile {profile.name} disagree on {key}"
    assert profile.devices.visibility_var == "ASCEND_RT_VISIBLE_DEVICES"


@pytest.mark.parametrize("pool", ["a2-8", "a3-16"])
def test_runner_pods_hold_no_github_credentials(pool: str) -> None:
    d, c = _runner(pool)
    # its one secret is its pool's Redis password
    assert m.secret_refs(d) == [f"volume redis-password <- secret adapt-bot-redis-runner-{pool}"]
    env = m.container_env(d, c)
    assert not (set(env) & m.GITHUB_CREDENTIAL_ENV), set(env) & m.GITHUB_CREDENTIAL_ENV
    assert not [k for k in env if "GITHUB" in k or "TOKEN" in k or "SECRET" in k]
    assert m.adapt_bot_names(env) <= RUNNER_ENV
    spec = m.pod_spec(d)
    assert spec["automountServiceAccountToken"] is False
    sa = m.by_name("ServiceAccount", spec["serviceAccountName"])
    assert sa["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False


def test_secret_check_sees_a_secret_slipped_into_a_runner() -> None:
    """The credential check above is able to fail: a webhook secret added to a runner is found."""
    d = copy.deepcopy(m.runner_deployments()[0])
    m.pod_spec(d)["containers"][0].setdefault("env", []).append(
        {
            "name": "ADAPT_BOT_WEBHOOK_SECRET",
            "valueFrom": {"secretKeyRef": {"name": "adapt-bot-github", "key": "x"}},
        }
    )
    assert "env ADAPT_BOT_WEBHOOK_SECRET <- secret adapt-bot-github" in m.secret_refs(d)


def test_runner_network_policy_blocks_ingress_and_the_metadata_service() -> None:
    pol = m.by_name("NetworkPolicy", "adapt-bot-runner")
    assert pol["spec"]["ingress"] == []
    blocks = [peer["ipBlock"] for rule in pol["spec"]["egress"] for peer in rule["to"] if "ipBlock" in peer]
    assert blocks and all("169.254.0.0/16" in b.get("except", []) for b in blocks)


def test_images_are_set_in_one_place() -> None:
    """adapt-bot images are named in the manifests without a registry or tag and retargeted by the
    kustomization's `images:`; third-party images are pinned to a tag in place."""
    retargeted = {i["name"]: i for i in m.kustomization()["images"]}
    for path in sorted(m.K8S.glob("*.yaml")):
        for doc in m.load_yaml_docs(path):
            if doc.get("kind") not in ("Deployment", "StatefulSet"):
                continue
            for c in m.pod_spec(doc)["containers"]:
                image = c["image"]
                if image.startswith("adapt-bot"):
                    assert image in retargeted, f"{path.name}: {image} is not in kustomization images"
                else:
                    assert ":" in image and not image.endswith(":latest"), f"{path.name}: pin {image}"
    rendered = {c["image"] for w in m.workloads() for c in m.pod_spec(w)["containers"]}
    for spec in retargeted.values():
        assert f"{spec['newName']}:{spec['newTag']}" in rendered
