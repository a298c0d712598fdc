"""Run chosen workloads of the test cluster as local processes, as a kubelet would run their pods.

kwok makes every pod Ready without running anything. For Argo CD that is not enough: the GitOps
loop needs its controller, repo-server and API server to really run. This runner watches the
workloads the real argo-cd chart installed and runs each container's own command line with the
environment the pod would get, read from the cluster: values, ConfigMap and Secret keys
(argocd-cmd-params-cm, argocd-redis), `$(VAR)` expansion in arguments. When a workload's pod
template or the values it reads change, its process restarts, as a rolled-out pod would; when the
namespace goes, its processes stop.

What differs from a pod, and why (each is an address or a path, never a setting of the chart):
- programs are the binaries built by tests/cluster/build.sh (and Debian's redis-server), listening
  on 127.0.0.1 at ports picked here, because there is no pod network;
- Service names (argocd-redis:6379, argocd-repo-server:8081) become those local addresses;
- volume mount paths become folders under the runner's state, holding the ConfigMap and Secret
  files they would hold;
- as in Argo CD's own local development setup (its Procfile): ARGOCD_FAKE_IN_CLUSTER=true, so
  the in-cluster destination (https://kubernetes.default.svc) is reached with the kubeconfig, and
  ARGOCD_GPG_ENABLED=false (it would make a GnuPG keyring at start, which the loop does not use).

Usage: podrunner.py STATE_DIR   (STATE_DIR/ports.json: redis, repo, server, metrics; runs until
stopped; logs per process in STATE_DIR/logs)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAMESPACE = "argocd"
RELEASE = "argocd"
POLL_SECONDS = 2.0
# Paths the programs read without being told (compiled-in defaults), told here where they are.
DATA_PATHS = {"/app/config/tls": "ARGOCD_TLS_DATA_PATH", "/app/config/ssh": "ARGOCD_SSH_DATA_PATH"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Workload:
    kind: str
    name: str
    container: str
    program: str
    extra_args: list[str] = field(default_factory=list)


def snapshot(namespace: str = NAMESPACE) -> dict[tuple[str, str], Any]:
    """A namespace's workloads, ConfigMaps and Secrets in one read: {(kind, name): object}."""
    out = subprocess.run(
        ["kubectl", "get", "deployments,statefulsets,configmaps,secrets", "-n", namespace, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    items = json.loads(out.stdout)["items"] if out.returncode == 0 else []
    return {(item["kind"].lower(), item["metadata"]["name"]): item for item in items}


class PodView:
    """What a container of a pod in one namespace would see, read from the cluster's objects
    (a snapshot()): its environment, and its volumes as local folders holding the ConfigMap and
    Secret files they would hold. Service addresses and mount paths in values become local."""

    def __init__(self, namespace: str, root: Path, services: dict[str, str] | None = None) -> None:
        self.namespace = namespace
        self.root = root  # volumes live in root/<workload>/<volume>
        self.services = services or {}
        self.objects: dict[tuple[str, str], Any] = {}

    def key_of(self, kind: str, name: str, key: str, optional: bool) -> str | None:
        data = self.objects.get((kind, name), {}).get("data") or {}
        if key not in data:
            if optional:
                return None
            raise LookupError(f"{kind}/{name} has no key {key}")
        value = data[key]
        return base64.b64decode(value).decode() if kind == "secret" else value

    def environment(
        self, container: dict[str, Any], mounts: dict[str, Path], fields: dict[str, str] | None = None
    ) -> dict[str, str]:
        """The container's variables; `fields` answers fieldRefs (metadata.name, status.podIP)."""
        known = {"metadata.namespace": self.namespace, **(fields or {})}
        env: dict[str, str] = {}
        for item in container.get("env", []):
            source = item.get("valueFrom", {})
            if "value" in item:
                value: str | None = item["value"]
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                value = self.key_of("configmap", ref["name"], ref["key"], ref.get("optional", False))
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                value = self.key_of("secret", ref["name"], ref["key"], ref.get("optional", False))
            elif "fieldRef" in source:
                value = known.get(source["fieldRef"]["fieldPath"], "")
            else:
                value = None
            if value is not None:
                env[item["name"]] = self.localise(expand(value, env), mounts)
        return env

    def localise(self, value: str, mounts: dict[str, Path]) -> str:
        flag, equals, path = value.partition("=")
        if equals and flag.startswith("-") and path.startswith("/"):  # --config.file=/etc/...
            return flag + equals + self.localise(path, mounts)
        for service, address in self.services.items():
            value = value.replace(service, address)
        for path, local in sorted(mounts.items(), key=lambda m: -len(m[0])):
            if value == path or value.startswith(path.rstrip("/") + "/"):
                return str(local) + value[len(path.rstrip("/")) :]
        return value

    def volumes(self, workload: str, spec: dict[str, Any], container: dict[str, Any]) -> dict[str, Path]:
        """Each mount path → a local folder holding what the volume would hold (Secrets and
        ConfigMaps, also as sources of a projected volume, with their `items`; emptyDir empty)."""
        root = self.root / workload
        sources = {v["name"]: v for v in spec.get("volumes", [])}
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts", []):
            local = root / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            volume = sources.get(mount["name"], {})
            for token in [s["serviceAccountToken"] for s in volume.get("projected", {}).get("sources", [])
                          if "serviceAccountToken" in s]:  # fmt: skip
                self.write_token(local / token["path"], spec.get("serviceAccountName", "default"))
            for kind, source in self._sources(volume):
                name = source.get("name") or source.get("secretName", "")
                data = self.objects.get((kind, name), {}).get("data") or {}
                paths = {i["key"]: i["path"] for i in source.get("items", [])} or {k: k for k in data}
                for key, path in paths.items():
                    if key not in data:
                        continue
                    text = base64.b64decode(data[key]) if kind == "secret" else data[key].encode()
                    target = local / path
                    # written on every poll: only what changed, as a kubelet updates files
                    if not target.exists() or target.read_bytes() != text:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(text)
            if mount.get("subPath"):
                local = local / mount["subPath"]
            mounts[mount["mountPath"]] = local
        return mounts

    def arguments(self, container: dict[str, Any], env: dict[str, str], mounts: dict[str, Path]) -> list[str]:
        """The container's command and arguments, made local, without the image's program (a
        leading absolute path), which the caller's local binary stands for."""
        argv = [*container.get("command", []), *container.get("args", [])]
        if argv and argv[0].startswith("/"):
            argv = argv[1:]
        return [self.localise(expand(a, env), mounts) for a in argv]

    def write_token(self, target: Path, account: str) -> None:
        """A token of the pod's service account, as the kubelet projects it (once: it lasts an hour)."""
        if target.exists():
            return
        token = subprocess.run(
            ["kubectl", "create", "token", account, "-n", self.namespace],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()  # fmt: skip
        target.write_text(token)

    @staticmethod
    def _sources(volume: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        direct = [(kind.lower(), volume[kind]) for kind in ("configMap", "secret") if kind in volume]
        projected = [
            (kind.lower(), source[kind])
            for source in volume.get("projected", {}).get("sources", [])
            for kind in ("configMap", "secret")
            if kind in source
        ]
        return direct + projected


class Runner:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.bin = Path(os.environ["TASKPLANER_ARGOCD_BIN"])
        # picked by cluster.sh, which tells the tests where the API server listens
        ports = json.loads((state / "ports.json").read_text())
        links = state / "bin"
        links.mkdir(parents=True, exist_ok=True)
        # the multi-call binary picks its program by file name; the repo-server calls "argocd"
        for name in ("argocd", "argocd-server", "argocd-repo-server", "argocd-application-controller"):
            link = links / name
            if not link.is_symlink():
                link.symlink_to(self.bin)
        self.links = links
        local = "127.0.0.1"
        self.view = PodView(
            NAMESPACE,
            state / "volumes",
            {
                "argocd-redis:6379": f"{local}:{ports['redis']}",
                "argocd-repo-server:8081": f"{local}:{ports['repo']}",
            },
        )
        kube = f"--kubeconfig {os.environ['KUBECONFIG']} --namespace {NAMESPACE}"
        listen = f"--address {local} --metrics-address {local} --metrics-port"
        self.workloads = [
            Workload(
                "deployment",
                f"{RELEASE}-redis",
                "redis",
                "/usr/bin/redis-server",
                f"--port {ports['redis']} --bind {local}".split(),
            ),
            Workload(
                "deployment",
                f"{RELEASE}-repo-server",
                "repo-server",
                str(links / "argocd-repo-server"),
                f"--port {ports['repo']} {listen} {free_port()}".split(),
            ),
            Workload(
                "statefulset",
                f"{RELEASE}-application-controller",
                "application-controller",
                str(links / "argocd-application-controller"),
                f"{kube} --metrics-port {ports['metrics']}".split(),
            ),
            Workload(
                "deployment",
                f"{RELEASE}-server",
                "server",
                str(links / "argocd-server"),
                f"{kube} --port {ports['server']} {listen} {free_port()}".split(),
            ),
        ]
        self.running: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
        (state / "logs").mkdir(exist_ok=True)

    def command_line(self, workload: Workload) -> tuple[list[str], dict[str, str]] | None:
        obj = self.view.objects.get((workload.kind, workload.name))
        if not obj:
            return None
        spec = obj["spec"]["template"]["spec"]
        [container] = [c for c in spec["containers"] if c["name"] == workload.container]
        mounts = self.view.volumes(workload.name, spec, container)
        env = self.view.environment(container, mounts)
        # as Argo CD's own local development setup (its Procfile) runs these programs
        # (git calls back "argocd" for credentials, found on PATH as in the image)
        env.update(
            ARGOCD_FAKE_IN_CLUSTER="true",
            ARGOCD_GPG_ENABLED="false",
            HOME=str(self.state / "home" / workload.name),
            PATH=f"{self.links}:{os.environ['PATH']}",
        )
        for path, variable in DATA_PATHS.items():
            if path in mounts:
                env[variable] = str(mounts[path])
        Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
        # the image's program (command, else the first argument that is a path) → the local binary
        return [workload.program, *self.view.arguments(container, env, mounts), *workload.extra_args], env

    # -- the loop -----------------------------------------------------------------------------
    def ensure_redis_secret(self) -> None:
        """The chart's redis-secret-init Job, run for real (kwok only marks it Complete)."""
        if self.view.key_of("secret", "argocd-redis", "auth", optional=True) is None:
            subprocess.run(
                [
                    str(self.links / "argocd"),
                    "admin",
                    "redis-initial-password",
                    "--kubeconfig",
                    os.environ["KUBECONFIG"],
                    "--namespace",
                    NAMESPACE,
                ],
                env={**os.environ, "ARGOCD_BINARY_NAME": "argocd"},
                check=True,
                capture_output=True,
                timeout=60,
            )
            self.view.objects = snapshot()

    def stop(self, name: str) -> None:
        _, process = self.running.pop(name)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def step(self) -> None:
        self.view.objects = snapshot()
        if ("deployment", f"{RELEASE}-server") not in self.view.objects:
            for name in list(self.running):
                self.stop(name)
            return
        self.ensure_redis_secret()
        for workload in self.workloads:
            line = self.command_line(workload)
            if line is None:
                if workload.name in self.running:
                    self.stop(workload.name)
                continue
            argv, env = line
            digest = hashlib.sha256(json.dumps([argv, sorted(env.items())]).encode()).hexdigest()
            current = self.running.get(workload.name)
            if current and current[0] == digest and current[1].poll() is None:
                continue
            if current:
                self.stop(workload.name)
            log = open(self.state / "logs" / f"{workload.name}.log", "ab")  # noqa: SIM115 (lives with the process)
            log.write(f"--- start {time.strftime('%H:%M:%S')}\n".encode())
            process = subprocess.Popen(
                argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=env["HOME"]
            )
            self.running[workload.name] = (digest, process)

    def run(self) -> None:
        def finish(*_: object) -> None:
            for name in list(self.running):
                self.stop(name)
            sys.exit(0)

        signal.signal(signal.SIGTERM, finish)
        signal.signal(signal.SIGINT, finish)
        while True:
            try:
                self.step()
            except (LookupError, subprocess.SubprocessError, ValueError) as error:
                print(f"podrunner: {error}", file=sys.stderr, flush=True)
            time.sleep(POLL_SECONDS)


def own_address(value: str, pod_ip: str) -> str:
    """A wildcard listen address (0.0.0.0, ":9090", "--x=:9090", Traefik's "--x=:8000/tcp")
    made the pod's own: in a pod it means the pod's address, here every address of the host."""
    if value == "0.0.0.0":  # noqa: S104 (read, never bound)
        return pod_ip
    return re.sub(r"(^|=)(0\.0\.0\.0)?:(\d+)(/tcp|/udp)?$", rf"\g<1>{pod_ip}:\3\4", value)


def container_process(
    view: PodView, pod: dict[str, Any], name: str, program: str, log: Path, extra: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """Start one container of a running pod (init containers too) as a local process: `program`
    stands for the image's entrypoint, the container's arguments and environment are the pod's,
    made local by `view` and own_address()."""
    spec = pod["spec"]
    [container] = [c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name]
    ip = pod["status"]["podIP"]
    mounts = view.volumes(pod["metadata"]["name"], spec, container)
    fields = {"metadata.name": pod["metadata"]["name"], "status.podIP": ip}
    env = {k: own_address(v, ip) for k, v in view.environment(container, mounts, fields).items()}
    args = [own_address(a, ip) for a in view.arguments(container, env, mounts)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [program, *args, *(extra or [])],
            env={"PATH": os.environ["PATH"], "HOME": str(log.parent), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
        )


# -- for tests: a pod's containers started once, checked, stopped ----------------------------
def versions() -> dict[str, str]:
    """tests/cluster/versions.env as a dict."""
    lines = (Path(__file__).with_name("versions.env")).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def cluster_binary(name: str, version_key: str) -> Path:
    """A binary tests/cluster/build.sh built: <its bin folder>/<name>-<version>."""
    folder = subprocess.run(
        [Path(__file__).with_name("build.sh"), "path"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    return Path(folder) / f"{name}-{versions()[version_key]}"


def kubectl(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["kubectl", *argv], input=stdin, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 120, every: float = 1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f} s")
        time.sleep(every)


def answers(process: subprocess.Popen[bytes], url: str, log: str) -> bool:
    """Whether a started program answers 200 at `url` yet; fails, showing its log, if it exited."""
    assert process.poll() is None, f"exited with {process.returncode}:\n{log}"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (http URLs the tests make)
            return bool(response.status == 200)
    except OSError:
        return False


def running_pod(namespace: str, selector: dict[str, str]) -> dict[str, Any] | None:
    labels = ",".join(f"{k}={v}" for k, v in selector.items())
    for pod in json.loads(kubectl("get", "pods", "-n", namespace, "-l", labels, "-o", "json"))["items"]:
        if (
            pod["status"].get("phase") == "Running"
            and pod["status"].get("podIP")
            and not pod["metadata"].get("deletionTimestamp")
        ):
            return pod
    return None


class Pods:
    """Starts containers of the cluster's pods as processes; stops them all at the end."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.processes: list[subprocess.Popen[bytes]] = []

    def view(self, namespace: str) -> PodView:
        view = PodView(namespace, self.state / "volumes")
        view.objects = snapshot(namespace)
        return view

    def start(
        self,
        namespace: str,
        pod: dict[str, Any],
        container: str,
        program: Path | str,
        extra: list[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        log = self.state / "logs" / f"{pod['metadata']['name']}-{container}.log"
        process = container_process(self.view(namespace), pod, container, str(program), log, extra)
        self.processes.append(process)
        return process

    def log(self, pod: dict[str, Any], container: str) -> str:
        path = self.state / "logs" / f"{pod['metadata']['name']}-{container}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop_all(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion from the variables defined before."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


if __name__ == "__main__":
    Runner(Path(sys.argv[1])).run()
