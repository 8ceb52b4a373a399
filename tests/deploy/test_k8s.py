"""The Kubernetes manifests (deploy/k8s), offline: every overlay and component rendered with
``kubectl kustomize``, every object validated against the vendored Kubernetes and CRD schemas
(deploy/k8s/schemas), and what the manifests say checked against the service itself: its
settings, its routes, its metrics, its image and its shut-down."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from service.frontend.app import BATCHER_CLOSE_S, create_app
from service.frontend.auth import HEALTH_PATHS, METRICS_PATHS
from service.metrics import ServiceMetrics
from service.settings import Settings, settings_to_env
from tests.support.deploy import COMPOSE, DOCKERFILE, ROOT, dockerfile_stages, load_compose

K8S = ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
SETTINGS_ENV = K8S / "components" / "settings" / "settings.env"
ADAPTER_VALUES = K8S / "prometheus-adapter" / "values.yaml"
DOCS = ROOT / "docs" / "kubernetes.md"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
# Components an overlay does not use, each rendered on top of the cpu overlay.
EXTRA_COMPONENTS = ("model-sync", "model-pvc")
VARIANTS = [*OVERLAYS, *(f"cpu+{c}" for c in EXTRA_COMPONENTS)]
SERVER_OVERLAYS = [o for o in OVERLAYS if o != "kserve"]
# Secrets the manifests name and the user creates (docs/kubernetes.md): never in the repository.
EXTERNAL_SECRETS = {"lstm-serving-api-key", "lstm-serving-model-store"}
SEQUENCE_HEADER = "X-Sequence-Id"

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed (its `kustomize` renders the overlays)"
)


# -- rendering ----------------------------------------------------------------------------------
def _kustomize(directory: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@cache
def _render_cached(variant: str) -> str:
    if "+" not in variant:
        return json.dumps(_kustomize(K8S / "overlays" / variant))
    overlay, component = variant.split("+")
    work = Path(tempfile.mkdtemp(prefix="lstm-serving-k8s-"))
    folder = work / variant
    folder.mkdir()
    up = os.path.relpath(K8S, folder)  # kustomize takes relative paths only
    (folder / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "namespace: lstm-serving\n"
        f"resources: [{up}/overlays/{overlay}]\ncomponents: [{up}/components/{component}]\n"
    )
    try:
        return json.dumps(_kustomize(folder))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def render(variant: str) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` makes of an overlay (or ``overlay+component``)."""
    return json.loads(_render_cached(variant))  # a fresh copy each time: tests may change it


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} objects"
    return found[0]


def settings_data(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The data of the settings ConfigMap (its generated name carries a hash)."""
    (config,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("lstm-serving-settings-")
    ]
    return dict(config["data"])


def setting(data: dict[str, str], name: str) -> str:
    return data[f"LSTM_SERVING_{name.upper()}"]


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment", "lstm-serving")["spec"]["template"]["spec"]


def server_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    if any(o["kind"] == "ServingRuntime" for o in objects):
        (container,) = one(objects, "ServingRuntime")["spec"]["containers"]
        return container
    (container,) = [c for c in pod_spec(objects)["containers"] if c["name"] == "server"]
    return container


# -- schemas ------------------------------------------------------------------------------------
def schema_file(api_version: str, kind: str) -> Path:
    """deploy/k8s/schemas/vendor.py's naming: ``<kind>-<group>-<version>.json``."""
    group, _, version = api_version.rpartition("/")
    return SCHEMAS / f"{kind.lower()}-{(group or 'core').replace('.', '-')}-{version}.json"


@cache
def _validator(path: Path) -> Any:
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(obj: dict[str, Any]) -> list[str]:
    path = schema_file(obj["apiVersion"], obj["kind"])
    assert path.is_file(), f"no vendored schema for {obj['apiVersion']} {obj['kind']}: {path}"
    return [
        f"{obj['kind']}/{obj['metadata']['name']}: /{'/'.join(map(str, e.absolute_path))}: "
        f"{e.message[:300]}"
        for e in _validator(path).iter_errors(obj)
    ]


@needs_kubectl
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_object_follows_its_schema(variant: str) -> None:
    objects = render(variant)
    assert objects
    errors = [error for obj in objects for error in schema_errors(obj)]
    assert not errors, "\n".join(errors)


def test_vendored_schemas_are_schemas_and_each_is_used() -> None:
    files = sorted(SCHEMAS.glob("*.json"))
    assert len(files) >= 12
    for path in files:
        _validator(path)  # check_schema: a broken file fails here
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: which schemas are used is not known")
    used = {schema_file(o["apiVersion"], o["kind"]) for v in VARIANTS for o in render(v)}
    assert set(files) == used, f"unused: {sorted(set(files) - used)}"
    readme = (SCHEMAS / "README.md").read_text()
    assert all(f"`{p.stem}`" in readme for p in files), "a schema's source is not in README.md"


def _wrong(variant: str, kind: str, change: Any) -> list[str]:
    obj = copy.deepcopy(next(o for o in render(variant) if o["kind"] == kind))
    change(obj)
    return schema_errors(obj)


@needs_kubectl
def test_schemas_refuse_what_the_api_server_would() -> None:
    """Each schema rejects a misspelt field and a wrong type: the validation above can fail."""

    def container(o: dict[str, Any]) -> dict[str, Any]:
        return o["spec"]["template"]["spec"]["containers"][0]

    cases = {
        ("gpu", "Deployment", "misspelt field"): lambda o: o["spec"]["template"]["spec"].update(
            terminationGracePeriod=75
        ),
        ("gpu", "Deployment", "probe port type"): lambda o: container(o)["readinessProbe"][
            "httpGet"
        ].update(port=[8000]),
        ("gpu", "Service", "port type"): lambda o: o["spec"]["ports"][0].update(port="http"),
        ("gpu", "HorizontalPodAutoscaler", "count type"): lambda o: o["spec"].update(
            minReplicas="2"
        ),
        ("gpu", "PodDisruptionBudget", "unknown"): lambda o: o["spec"].update(maxDisrupted=1),
        ("gpu", "ServiceMonitor", "unknown"): lambda o: o["spec"]["endpoints"][0].update(
            paths="/metrics"
        ),
        ("keda", "ScaledObject", "trigger without type"): lambda o: o["spec"]["triggers"][0].pop(
            "type"
        ),
        ("gpu", "Ingress", "port type"): lambda o: o["spec"]["rules"][0]["http"]["paths"][0][
            "backend"
        ]["service"]["port"].update(number="http"),
        ("gpu", "ConfigMap", "value type"): lambda o: o["data"].update(LSTM_SERVING_PORT=8000),
        ("gpu", "ServiceAccount", "type"): lambda o: o.update(automountServiceAccountToken="no"),
        ("cpu+model-pvc", "PersistentVolumeClaim", "type"): lambda o: o["spec"].update(
            accessModes="ReadOnlyMany"
        ),
        ("kserve", "ServingRuntime", "protocol"): lambda o: o["spec"]["protocolVersions"].append(7),
        ("kserve", "ServingRuntime", "container field"): lambda o: o["spec"]["containers"][
            0
        ].update(readinesProbe={}),
        ("kserve", "InferenceService", "model field"): lambda o: o["spec"]["predictor"][
            "model"
        ].update(storageURI="s3://x"),
        ("kserve", "InferenceService", "scale metric"): lambda o: o["spec"]["predictor"].update(
            scaleMetric="queue"
        ),
    }
    for (variant, kind, what), change in cases.items():
        assert _wrong(variant, kind, change), f"{kind}: {what} passed the schema"
    kinds = {o["kind"] for v in VARIANTS for o in render(v)}
    assert kinds == {kind for _, kind, _ in cases}, "a kind without a refusal case"


# -- settings -----------------------------------------------------------------------------------
def _env_lines() -> tuple[dict[str, str], dict[str, str]]:
    """settings.env: (set, commented out) as name -> value."""
    active: dict[str, str] = {}
    commented: dict[str, str] = {}
    for line in SETTINGS_ENV.read_text().splitlines():
        match = re.fullmatch(r"(# )?(LSTM_SERVING_[A-Z0-9_]+)=(.*)", line.strip())
        if match:
            (commented if match[1] else active)[match[2]] = match[3]
    return active, commented


def test_every_setting_is_reachable_from_the_configmap_or_the_secret() -> None:
    """Every field of Settings is a line of settings.env (set, or commented out where it stays
    unset on purpose), except the API key, which comes from the Secret; nothing else is."""
    active, commented = _env_lines()
    assert not set(active) & set(commented)
    fields = {f"LSTM_SERVING_{name.upper()}" for name in Settings.model_fields}
    assert set(active) | set(commented) | {"LSTM_SERVING_API_KEY"} == fields
    assert "LSTM_SERVING_API_KEY" not in active | commented
    for name in commented:  # unset on purpose: their default is unset or set by the service
        field = Settings.model_fields[name.removeprefix("LSTM_SERVING_").lower()]
        assert field.default in (None, []), name


def _settings_from(data: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("LSTM_SERVING_"):
            monkeypatch.delenv(name)
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    return Settings()


@needs_kubectl
@pytest.mark.parametrize("variant", VARIANTS)
def test_the_configmap_is_valid_settings(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What each pod gets in its environment parses as the service parses it (validators
    included), and says what it means to say."""
    data = settings_data(render(variant))
    active, _ = _env_lines()
    assert set(data) == set(active)
    settings = _settings_from(data, monkeypatch)
    assert settings.host == "0.0.0.0"
    assert str(settings.port) == setting(data, "port")
    assert settings.api_key is None  # the key is not in a ConfigMap
    assert settings.log_format == "json"
    # Health and metrics stay open: the probes and Prometheus send no key.
    assert not settings.api_key_protects_health and not settings.api_key_protects_metrics
    gpu = "nvidia.com/gpu" in json.dumps(server_container(render(variant))["resources"]) or (
        variant == "kserve"
    )
    assert settings.provider == ("cuda" if gpu else "cpu")
    assert settings.workers == (4 if gpu else 1)


def test_the_commented_settings_parse_when_uncommented(monkeypatch: pytest.MonkeyPatch) -> None:
    active, commented = _env_lines()
    for name, value in commented.items():
        settings = _settings_from({**active, name: value}, monkeypatch)
        assert settings_to_env(settings)[name] == value  # taken, as written


@needs_kubectl
@pytest.mark.parametrize("variant", VARIANTS)
def test_the_api_key_comes_from_the_secret(variant: str) -> None:
    container = server_container(render(variant))
    (key,) = [e for e in container["env"] if e["name"] == "LSTM_SERVING_API_KEY"]
    ref = key["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "lstm-serving-api-key" and ref["key"] == "api-key"
    assert not ref.get("optional", False)  # no Secret, no pod: never an open API by accident


@needs_kubectl
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_reference_resolves(variant: str) -> None:
    """ConfigMaps (hashed names included) and Services that objects name are in the render;
    the Secrets named are the ones the user creates."""
    objects = render(variant)
    text = json.dumps(objects)
    config_maps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    named = set(re.findall(r'"configMapRef": \{"name": "([^"]+)"', text))
    assert named and named <= config_maps
    secrets = set(re.findall(r'"secretRef": \{"name": "([^"]+)"', text)) | set(
        re.findall(r'"secretKeyRef": \{"key": "[^"]+", "name": "([^"]+)"', text)
    )
    assert secrets and secrets <= EXTERNAL_SECRETS
    assert not [o for o in objects if o["kind"] == "Secret"]
    assert {o["metadata"].get("namespace") for o in objects} == {"lstm-serving"}


# -- probes, ports, shut-down ---------------------------------------------------------------------
async def _get_all(paths: list[str]) -> dict[str, int]:
    app = create_app(Settings())  # no lifespan: as the probes find a pod that is starting
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as http:
        return {path: (await http.get(path)).status_code for path in paths}


def _probe_paths(container: dict[str, Any]) -> dict[str, str]:
    return {
        probe: container[probe]["httpGet"]["path"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
        if probe in container
    }


@needs_kubectl
@pytest.mark.parametrize("variant", VARIANTS)
def test_probes_ask_the_service_s_own_health_routes(variant: str) -> None:
    objects = render(variant)
    container = server_container(objects)
    paths = _probe_paths(container)
    assert paths["readinessProbe"] == "/v2/health/ready"
    assert paths["livenessProbe"] == "/v2/health/live"
    # Open without the API key (the probes send none; api_key_protects_health is off).
    assert set(paths.values()) <= set(HEALTH_PATHS)
    statuses = asyncio.run(_get_all(sorted({*paths.values(), "/v2/health/nothing"})))
    assert statuses.pop("/v2/health/nothing") == 404  # an unknown route would fail every probe
    # Before the models are loaded: live says yes, ready says not yet (503).
    assert statuses == {p: 200 if p.endswith("live") else 503 for p in statuses}
    port = int(setting(settings_data(objects), "port"))
    (declared,) = container["ports"]
    assert declared["containerPort"] == port
    for probe in paths:
        assert container[probe]["httpGet"]["port"] in (declared.get("name"), port)


@needs_kubectl
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "kserve"])
def test_start_up_gets_longer_than_the_engines_may_take(variant: str) -> None:
    objects = render(variant)
    startup = server_container(objects)["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget > float(setting(settings_data(objects), "engine_start_timeout_s"))


def _pre_stop_s(container: dict[str, Any]) -> float:
    pre_stop = container.get("lifecycle", {}).get("preStop")
    if pre_stop is None:
        return 0.0
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    return float(command[1])


@needs_kubectl
@pytest.mark.parametrize("variant", VARIANTS)
def test_the_grace_period_outlasts_the_drain(variant: str) -> None:
    """SIGKILL must not cut the drain short: the preStop pause, then the frontends' drain, then
    the engine's (each up to drain_timeout_s, with several workers), then the batchers' close."""
    objects = render(variant)
    if variant == "kserve":
        grace = one(objects, "InferenceService")["spec"]["predictor"]
        grace_s = grace["terminationGracePeriodSeconds"]
    else:
        grace_s = pod_spec(objects)["terminationGracePeriodSeconds"]
    drain = float(setting(settings_data(objects), "drain_timeout_s"))
    pre_stop = _pre_stop_s(server_container(objects))
    assert grace_s > pre_stop + 2 * drain + BATCHER_CLOSE_S


@needs_kubectl
@pytest.mark.parametrize("variant", SERVER_OVERLAYS)
def test_services_reach_the_pods_port(variant: str) -> None:
    objects = render(variant)
    labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in server_container(objects)["ports"]}
    services = [o for o in objects if o["kind"] == "Service"]
    assert {s["metadata"]["name"] for s in services} == {"lstm-serving", "lstm-serving-streams"}
    for service in services:
        assert service["spec"]["selector"].items() <= labels.items()
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] in port_names
    budget = one(objects, "PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    # No `kubectl apply` resets the count the autoscaler set.
    assert "replicas" not in one(objects, "Deployment")["spec"]


# -- security -----------------------------------------------------------------------------------
@needs_kubectl
@pytest.mark.parametrize("variant", VARIANTS)
def test_non_root_read_only_with_emptydirs_where_the_service_writes(variant: str) -> None:
    objects = render(variant)
    container = server_container(objects)
    (user,) = dockerfile_stages()["runtime"].all("USER")
    uid, gid = (int(n) for n in user.args.split(":"))
    if variant == "kserve":
        pod = one(objects, "ServingRuntime")["spec"]
        context = container["securityContext"]
    else:
        pod = pod_spec(objects)
        context = {**pod["securityContext"], **container["securityContext"]}
        assert pod["enableServiceLinks"] is False  # LSTM_SERVING_PORT=tcp://... otherwise
        assert pod["automountServiceAccountToken"] is False
    assert context["runAsNonRoot"] is True
    assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    # Where it writes: tempfile's folder (the supervisor's run folder: metrics, engine sockets)
    # and the streams' states; each an emptyDir.
    empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    state_dir = setting(settings_data(objects), "stream_state_dir")
    for path in ("/tmp", state_dir):
        assert mounts.get(path) in empty, f"{path} is not an emptyDir"


@needs_kubectl
@pytest.mark.parametrize("variant", VARIANTS)
def test_the_image_is_the_compose_stack_s(variant: str) -> None:
    image = load_compose(COMPOSE)["services"]["server"]["image"]
    assert server_container(render(variant))["image"] == image


# -- devices and models ---------------------------------------------------------------------------
@needs_kubectl
@pytest.mark.parametrize("variant", SERVER_OVERLAYS)
def test_gpu_overlays_take_one_gpu_and_the_cpu_one_none(variant: str) -> None:
    objects = render(variant)
    resources = server_container(objects)["resources"]
    provider = setting(settings_data(objects), "provider")
    gpus = {k: v.get("nvidia.com/gpu") for k, v in resources.items()}
    if provider == "cuda":
        assert gpus == {"requests": 1, "limits": 1}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
            pod_spec(objects)["tolerations"]
        )
    else:
        assert provider == "cpu" and gpus == {"requests": None, "limits": None}
    for kind in ("cpu", "memory"):
        assert resources["requests"][kind] and resources["limits"][kind]


@needs_kubectl
def test_models_come_from_the_image_or_a_read_only_volume() -> None:
    env = " ".join(i.args for i in dockerfile_stages()["runtime"].all("ENV"))
    (image_repository,) = re.findall(r"LSTM_SERVING_MODEL_REPOSITORY=(\S+)", env)
    for variant in SERVER_OVERLAYS:
        objects = render(variant)
        assert setting(settings_data(objects), "model_repository") == image_repository
        assert image_repository not in json.dumps(server_container(objects)["volumeMounts"])
    for component in EXTRA_COMPONENTS:
        objects = render(f"cpu+{component}")
        repository = setting(settings_data(objects), "model_repository")
        (mount,) = [
            m for m in server_container(objects)["volumeMounts"] if m["mountPath"] == repository
        ]
        assert mount["readOnly"] is True
        (volume,) = [v for v in pod_spec(objects)["volumes"] if v["name"] == mount["name"]]
        if component == "model-sync":
            (init,) = pod_spec(objects)["initContainers"]
            (writes,) = [m for m in init["volumeMounts"] if m["name"] == mount["name"]]
            assert "emptyDir" in volume and not writes.get("readOnly", False)
            assert writes["mountPath"] in init["args"] and "$(MODEL_SOURCE)" in init["args"]
            assert init["securityContext"]["readOnlyRootFilesystem"] is True
        else:
            claim = volume["persistentVolumeClaim"]["claimName"]
            assert one(objects, "PersistentVolumeClaim", claim)


@needs_kubectl
def test_kserve_runtime_serves_v2_onnx_from_the_storage_initializer_s_folder() -> None:
    objects = render("kserve")
    runtime = one(objects, "ServingRuntime")
    service = one(objects, "InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert runtime["spec"]["protocolVersions"] == ["v2"] == [model["protocolVersion"]]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats == {"onnx"}
    assert model["runtime"] == runtime["metadata"]["name"]
    # KServe's storage initializer downloads storageUri into /mnt/models.
    assert setting(settings_data(objects), "model_repository") == "/mnt/models"
    assert model["storageUri"].startswith(("s3://", "gs://", "pvc://", "https://"))
    annotations = runtime["metadata"]["annotations"]
    assert int(annotations["prometheus.kserve.io/port"]) == int(
        setting(settings_data(objects), "port")
    )
    assert annotations["prometheus.kserve.io/path"] in METRICS_PATHS


# -- autoscaling ----------------------------------------------------------------------------------
def _metric_names() -> set[str]:
    return {metric.name for metric in ServiceMetrics().registry.collect()}


def _query_metric_and_labels(query: str) -> tuple[str, dict[str, str]]:
    match = re.fullmatch(r"sum\((\w+)\{([^}]*)\}\)", query)
    assert match, query
    labels = dict(re.findall(r'(\w+)=~?"([^"]*)"', match[2]))
    return match[1], labels


@needs_kubectl
@pytest.mark.parametrize("variant", SERVER_OVERLAYS)
def test_one_autoscaler_on_the_service_s_queue_depth(variant: str) -> None:
    objects = render(variant)
    data = settings_data(objects)
    deployment = one(objects, "Deployment")
    scalers = [o for o in objects if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
    assert len(scalers) == 1, "HPA and KEDA would fight over the replicas"
    (scaler,) = scalers
    target = scaler["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    if scaler["kind"] == "HorizontalPodAutoscaler":
        (metric,) = scaler["spec"]["metrics"]
        name = metric["pods"]["metric"]["name"]
        goal = float(metric["pods"]["target"]["averageValue"])
        least = scaler["spec"]["minReplicas"]
    else:
        (trigger,) = scaler["spec"]["triggers"]
        assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
        name, labels = _query_metric_and_labels(trigger["metadata"]["query"])
        assert labels["namespace"] == deployment["metadata"]["namespace"]
        assert labels["service"] == _scraped_service(objects)
        goal = float(trigger["metadata"]["threshold"])
        least = scaler["spec"]["minReplicaCount"]
    assert name == "lstm_queue_depth" and name in _metric_names()
    # One full batch waiting per pod, far below where the pods refuse (429).
    assert goal == float(setting(data, "max_batch_size"))
    assert goal < float(setting(data, "max_queue_sequences")) / 8
    # A drain may take one pod while another serves.
    assert least > one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"]


def _scraped_service(objects: list[dict[str, Any]]) -> str:
    monitor = one(objects, "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    matched = [
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Service" and wanted.items() <= o["metadata"].get("labels", {}).items()
    ]
    assert len(matched) == 1, f"the ServiceMonitor selects {matched}: each pod scraped once"
    return matched[0]


@needs_kubectl
@pytest.mark.parametrize("variant", SERVER_OVERLAYS)
def test_prometheus_scrapes_metrics_once_per_pod(variant: str) -> None:
    objects = render(variant)
    service = one(objects, "Service", _scraped_service(objects))
    (endpoint,) = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] in METRICS_PATHS
    assert asyncio.run(_get_all([endpoint["path"]])) == {endpoint["path"]: 200}


@needs_kubectl
def test_the_adapter_rule_serves_the_hpa_s_metric() -> None:
    objects = render("gpu")
    (metric,) = one(objects, "HorizontalPodAutoscaler")["spec"]["metrics"]
    (rule,) = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    series = re.fullmatch(r"(\w+)\{(.*)\}", rule["seriesQuery"])
    assert series and series[1] in _metric_names()
    assert rule["name"]["as"] == metric["pods"]["metric"]["name"] == series[1]
    assert re.fullmatch(rule["name"]["matches"], series[1])
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    assert f'service="{_scraped_service(objects)}"' in rule["metricsQuery"]
    assert "by (<<.GroupBy>>)" in rule["metricsQuery"]


@needs_kubectl
def test_kserve_scales_on_the_same_query() -> None:
    objects = render("kserve")
    predictor = one(objects, "InferenceService")["spec"]["predictor"]
    annotations = one(objects, "InferenceService")["metadata"]["annotations"]
    assert annotations["serving.kserve.io/autoscalerClass"] == "keda"
    (metric,) = predictor["autoScaling"]["metrics"]
    name, labels = _query_metric_and_labels(metric["external"]["metric"]["query"])
    assert name == "lstm_queue_depth" and name in _metric_names()
    assert labels["namespace"] == one(objects, "InferenceService")["metadata"]["namespace"]
    keda = one(render("keda"), "ScaledObject")["spec"]["triggers"][0]["metadata"]
    assert float(metric["external"]["target"]["averageValue"]) == float(keda["threshold"])
    assert predictor["minReplicas"] >= 2


# -- sticky streams -------------------------------------------------------------------------------
@needs_kubectl
@pytest.mark.parametrize("variant", SERVER_OVERLAYS)
def test_the_ingress_hashes_streams_and_balances_the_rest(variant: str) -> None:
    objects = render(variant)
    data = settings_data(objects)
    ingresses = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Ingress"}
    main, streams = ingresses["lstm-serving"], ingresses["lstm-serving-streams"]
    prefix = "nginx.ingress.kubernetes.io/"
    ann = {k.removeprefix(prefix): v for k, v in main["metadata"]["annotations"].items()}
    assert "upstream-hash-by" not in ann and "canary" not in ann
    size = re.fullmatch(r"(\d+)m", ann["proxy-body-size"])
    assert size and int(size[1]) * 1024 * 1024 == int(setting(data, "max_body_bytes"))
    assert float(ann["proxy-read-timeout"]) > float(setting(data, "request_timeout_s"))
    canary = {k.removeprefix(prefix): v for k, v in streams["metadata"]["annotations"].items()}
    assert canary["canary"] == "true" and canary["canary-by-header"] == SEQUENCE_HEADER
    # Any non-empty value (ingress-nginx's canary-by-header alone would want "always").
    assert re.fullmatch(canary["canary-by-header-pattern"], "sensor-7")
    assert not re.fullmatch(canary["canary-by-header-pattern"], "")
    assert canary["upstream-hash-by"] == "$http_" + SEQUENCE_HEADER.lower().replace("-", "_")
    for ingress in (main, streams):
        assert ingress["spec"]["ingressClassName"] == "nginx"
    rule = lambda i: i["spec"]["rules"][0]  # noqa: E731
    assert rule(main)["host"] == rule(streams)["host"]  # a canary shares the main's host, path
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    for ingress in (main, streams):
        (path,) = rule(ingress)["http"]["paths"]
        backend = path["backend"]["service"]
        ports = {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
        assert backend["port"]["name"] in ports
    assert rule(main)["http"]["paths"][0]["backend"]["service"]["name"] == "lstm-serving"


# -- documentation --------------------------------------------------------------------------------
def test_the_page_names_every_overlay_component_and_the_header() -> None:
    text = DOCS.read_text()
    for overlay in OVERLAYS:
        assert f"overlays/{overlay}" in text, overlay
    for component in (K8S / "components").iterdir():
        assert f"components/{component.name}" in text, component.name
    assert SEQUENCE_HEADER in text and "headers=" in text
    assert DOCKERFILE.is_file()
