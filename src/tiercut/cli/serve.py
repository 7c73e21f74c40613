"""``tiercut serve | infer | bench``: the runtime's commands (registered in main.py).

Also runnable on its own as ``python -m tiercut.cli.serve serve ...`` (the tests and
benchmarks start servers that way).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from ..errors import TiercutError
from .common import _fail, console
from .dashboard import DASHBOARD, DASHBOARD_LOG, open_feed


def _endpoints(text: str) -> list[list[str]]:
    """``edge1:1|edge2:1,cloud:1``: tiers separated by commas, hosts of one tier by ``|``."""
    tiers = [[h.strip() for h in t.split("|") if h.strip()] for t in text.split(",")
             if t.strip()]
    for e in (h for t in tiers for h in t):
        host, sep, port = e.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise typer.BadParameter(f"endpoint {e!r} is not host:port, e.g. 127.0.0.1:50051")
    return tiers


def _client_security(tls_ca: Optional[Path], client_cert: Optional[Path],
                     client_key: Optional[Path], token_file: Optional[Path],
                     server_name: Optional[str] = None):  # noqa: ANN202
    from ..runtime.security import ClientSecurity, SecurityError

    if not any((tls_ca, client_cert, client_key, token_file)):
        return None
    try:
        return ClientSecurity.from_files(tls_ca, client_cert, client_key, token_file,
                                         server_name)
    except SecurityError as exc:
        raise typer.BadParameter(str(exc)) from None


_TLS_CA = typer.Option(None, "--tls-ca", help="PEM CA that signed the servers' certificates; "
                       "turns on TLS")
_CLIENT_CERT = typer.Option(None, "--client-cert", help="PEM client certificate (mutual TLS)")
_CLIENT_KEY = typer.Option(None, "--client-key", help="PEM key of --client-cert")
_TOKEN = typer.Option(None, "--token-file", help="file holding the bearer token the servers "
                      "require")
_SERVER_NAME = typer.Option(None, "--server-name", help="name to check the servers' "
                            "certificates against, when it differs from the host")
_ENDPOINTS_HELP = ("host:port of each tier after the device, in route order, comma-separated; "
                   "several hosts of one tier separated by | (tried in order)")


def _load_plan(path: Path, input_shape: Optional[str], peers: str = ""):  # noqa: ANN202
    from ..runtime.stageplan import PlanError, StagePlan
    from .infer_help import PLAN_HOLDS

    shape = None
    if input_shape:
        try:
            shape = tuple(int(d) for d in input_shape.replace("x", ",").split(","))
        except ValueError:
            raise typer.BadParameter(f"--input-shape {input_shape!r} is not like 1,3,224,224")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"--plan {str(path)!r}: {exc.strerror}") from None
    named = None
    if peers:
        named = dict(p.split("=", 1) for p in peers.split(",") if "=" in p)
        if len(named) != len(peers.split(",")):
            raise typer.BadParameter(f"--peers {peers!r} is not like name=host:port,...")
    try:
        if not text.strip():
            raise PlanError(f"plan file is {'empty' if not text else 'blank'}")
        return StagePlan.from_json(text, shape, named)
    except PlanError as exc:
        raise PlanError(f"--plan {str(path)!r}: {exc}; {PLAN_HOLDS}") from None


def _load_input(path: Path):  # noqa: ANN202
    import numpy as np
    import torch

    if not path.exists():
        raise typer.BadParameter(f"--input {str(path)!r} does not exist")
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path, allow_pickle=False))
    if path.suffix in (".pt", ".pth"):
        value = torch.load(path, weights_only=True)
        if not isinstance(value, torch.Tensor):
            raise typer.BadParameter(f"--input {str(path)!r} holds a {type(value).__name__}, "
                                     "not one tensor")
        return value
    raise typer.BadParameter(f"--input {str(path)!r}: give a .pt (torch.save of one tensor) or "
                             ".npy file")


def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(50051, "--port", min=0, max=65535, help="0 picks a free port"),
    models: str = typer.Option(..., "--models", help="models this server hosts: zoo names or "
                               "package.module:factory, comma-separated"),
    backend: str = typer.Option("torch", "--backend", help="stage backend: torch or "
                                "onnxruntime"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="intra-op threads"),
    workers: int = typer.Option(1, "--workers", min=1, help="stages computed at once"),
    max_message_mb: int = typer.Option(256, "--max-message-mb", min=1,
                                       help="largest gRPC message accepted or sent"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="where the onnxruntime "
                                             "backend keeps exported stages"),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="PEM server certificate "
                                            "(chain); with --tls-key turns on TLS"),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="PEM key of --tls-cert"),
    client_ca: Optional[Path] = typer.Option(None, "--client-ca", help="PEM CA of client "
                                             "certificates: require mutual TLS"),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="file holding the "
                                              "bearer token every RPC must carry"),
    insecure_bind: bool = typer.Option(False, "--insecure-bind", help="listen without TLS on "
                                       "a non-loopback address anyway"),
    forward_tls_ca: Optional[Path] = typer.Option(None, "--forward-tls-ca", help="CA of the "
                                                  "next tier's certificates (TLS when forwarding)"),
    forward_cert: Optional[Path] = typer.Option(None, "--forward-cert", help="client "
                                                "certificate for the next tier; default "
                                                "--tls-cert when --forward-tls-ca is given"),
    forward_key: Optional[Path] = typer.Option(None, "--forward-key", help="key of "
                                               "--forward-cert; default --tls-key"),
    forward_token_file: Optional[Path] = typer.Option(None, "--forward-token-file",
                                                      help="token for the next tier; default "
                                                      "--token-file"),
    max_in_flight: int = typer.Option(64, "--max-in-flight", min=1, help="Infer requests "
                                      "handled at once; more are refused RESOURCE_EXHAUSTED"),
    max_per_client: int = typer.Option(32, "--max-per-client", min=1, help="requests one "
                                       "client (tiercut-client-id, else peer address) may have "
                                       "in flight"),
    peers: str = typer.Option("", "--peers", help="host:port,... this server may fan a divided "
                              "stage out to (a plan naming another is refused)"),
    max_elements: Optional[int] = typer.Option(None, "--max-elements", min=1, help="largest "
                                               "tensor accepted, in elements"),
    cpus: Optional[str] = typer.Option(None, "--cpus", help="run on these CPUs only, e.g. 1, "
                                       "0,2 or 2-3 (tiers sharing a machine: each its own "
                                       "cores)"),
    announce: bool = typer.Option(False, "--announce", help="announce this node on the LAN "
                                  "(mDNS, _tiercut._tcp) for tiercut cluster discover"),
    node_name: Optional[str] = typer.Option(None, "--node-name", help="the name it announces "
                                            "(default HOSTNAME_PORT); letters, digits, _"),
    announce_on: str = typer.Option("", "--announce-on", help="IPv4 addresses of the "
                                    "interfaces to announce on, comma-separated (default: "
                                    "127.0.0.1 for a loopback --host, else all)"),
) -> None:
    """Host MODELS and run the stages of plans sent to this tier; SIGTERM drains and exits."""
    from ..measure import cpucap
    from ..runtime.launch import serve_forever
    from ..runtime.server import BACKENDS, TierServer
    from ..runtime.onnx_model import check_hosted

    if cpus is not None:
        try:
            cpucap.pin(os.getpid(), cpucap.parse_cpus(cpus))
        except cpucap.CpuCapError as exc:
            raise typer.BadParameter(f"--cpus: {exc}") from None

    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise typer.BadParameter("--models is empty; give e.g. resnet18,mobilenet_v2")
    if backend not in BACKENDS:
        raise typer.BadParameter(f"--backend {backend!r}; known: {', '.join(sorted(BACKENDS))}")
    for name in names:
        if ":" not in name:
            try:
                check_hosted(name)
            except TiercutError as exc:
                raise typer.BadParameter(str(exc)) from None
    announcer = _announcer(announce, node_name, announce_on, host, names)
    import dataclasses

    from .. import codecs
    from ..runtime.security import ClientSecurity, SecurityError, ServerSecurity

    try:
        security = ServerSecurity.from_files(tls_cert, tls_key, client_ca, token_file)
        forward = None
        if forward_tls_ca or forward_token_file or security.token:
            use_cert = forward_tls_ca is not None
            forward = ClientSecurity.from_files(
                forward_tls_ca, forward_cert or (tls_cert if use_cert else None),
                forward_key or (tls_key if use_cert else None),
                forward_token_file or token_file)
        limits = codecs.DEFAULT_LIMITS if max_elements is None else dataclasses.replace(
            codecs.DEFAULT_LIMITS, max_elements=max_elements)
        server = TierServer(names, host=host, port=port, threads=threads, workers=workers,
                            max_message_bytes=max_message_mb << 20, backend=backend,
                            cache_dir=cache_dir, limits=limits, security=security,
                            forward_security=forward, insecure_bind=insecure_bind,
                            max_in_flight=max_in_flight, max_per_client=max_per_client,
                            peers=[p for p in peers.split(",") if p],
                            known_peers=announcer.known if announcer else None)
    except SecurityError as exc:
        _fail(exc)

    def started(endpoint: str) -> None:
        print(f"tiercut serve: listening on {endpoint} models={','.join(names)} "
              f"backend={backend} tls={'mutual' if security.client_ca else security.tls} "
              f"token={bool(security.token)}", flush=True)
        if announcer:
            _announce(announcer, node_name, host, server.port, names)

    try:
        serve_forever(server, started, announcer.close if announcer else None)
    except OSError as exc:
        _fail(exc)
    finally:
        if announcer:
            announcer.close()
    print("tiercut serve: stopped", flush=True)


def _announcer(announce: bool, node_name: Optional[str], announce_on: str, host: str,
               models: list[str]):  # noqa: ANN202
    """The mDNS announcer ``serve --announce`` asks for, its interfaces open (None without
    --announce); a bad name or address is a usage error before anything listens."""
    if not announce:
        if node_name or announce_on:
            raise typer.BadParameter("--node-name and --announce-on need --announce")
        return None
    from ..discover import Announcer, BadRecord, NodeRecord, default_interfaces
    from ..discover.record import check_name

    interfaces = [a.strip() for a in announce_on.split(",") if a.strip()] or \
        default_interfaces(host)
    try:
        if node_name is not None:
            check_name(node_name)
        NodeRecord("x", 1, tuple(models), 1, 0, "").txt()  # fits a TXT entry
        return Announcer(interfaces, log=lambda t: print(t, flush=True)).open()
    except BadRecord as exc:
        raise typer.BadParameter(str(exc)) from None


def _announce(announcer: Any, node_name: Optional[str], host: str, port: int,
              models: list[str]) -> None:
    from ..discover import NodeRecord, announced_addresses, available_cpus, available_memory
    from ..discover.record import default_name, tiercut_version

    # after --cpus pinned this process: the CPUs and memory it really has
    record = NodeRecord(node_name or default_name(port), port, tuple(models), available_cpus(),
                        available_memory(), tiercut_version(),
                        tuple(announced_addresses(host, announcer.interfaces)))
    announcer.start(record)


def infer_cmd(
    plan: Path = typer.Option(..., "--plan", help="plan JSON (tiercut plan --json, or a "
                              "tiercut-stageplan/1)"),
    endpoints: str = typer.Option("", "--endpoints", help=_ENDPOINTS_HELP),
    input: Optional[Path] = typer.Option(None, "--input", help=".pt or .npy input; default: "
                                         "the model's example input"),
    codec: str = typer.Option("raw", "--codec", help="codec for every hop, e.g. raw, fp16, "
                              "q8+zstd"),
    deadline: Optional[float] = typer.Option(None, "--deadline", min=0.0,
                                             help="seconds before finishing locally"),
    no_fallback: bool = typer.Option(False, "--no-fallback", help="fail instead of finishing "
                                     "locally when a tier cannot be reached"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape",
                                              help="for module:factory models"),
    as_json: bool = typer.Option(False, "--json", help="print the measurement as JSON"),
    tls_ca: Optional[Path] = _TLS_CA, client_cert: Optional[Path] = _CLIENT_CERT,
    client_key: Optional[Path] = _CLIENT_KEY, token_file: Optional[Path] = _TOKEN,
    server_name: Optional[str] = _SERVER_NAME,
    peers: str = typer.Option("", "--peers", help="for a divided plan (plan --divide): each "
                              "division host's endpoint, name=host:port,..."),
) -> None:
    """Run one request of PLAN across the tier servers; print the output and the measurement."""
    import dataclasses

    import torch

    from ..runtime.stageplan import example_inputs
    from .infer_help import fallback_note, tls_note

    try:
        stage_plan = _load_plan(plan, input_shape, peers)
    except TiercutError as exc:
        _fail(exc)
    client = _client(stage_plan, endpoints, codec,
                     _client_security(tls_ca, client_cert, client_key, token_file, server_name),
                     deadline_s=deadline, fallback=not no_fallback)
    args = (_load_input(input),) if input else example_inputs(stage_plan)
    try:
        with client:
            output, m = client.infer(*args)
    except TiercutError as exc:
        tls_note(str(exc), tls_ca is not None)
        _fail(exc)
    fallback_note(m, tls_ca is not None)
    if as_json:
        print(json.dumps(dataclasses.asdict(m), indent=1, default=str))
        return
    first = output
    while isinstance(first, (tuple, list)) and first:
        first = first[0]
    if isinstance(first, torch.Tensor):
        flat = first.reshape(first.shape[0], -1) if first.ndim > 1 else first.reshape(1, -1)
        k = min(5, flat.shape[1])
        top = torch.topk(flat[0].float(), k)
        console.print(f"output {list(first.shape)} {str(first.dtype).removeprefix('torch.')}; "
                      f"top {k}: " + ", ".join(f"#{i}={v:.4g}" for v, i in
                                               zip(top.values.tolist(), top.indices.tolist())),
                      highlight=False)
    else:
        console.print(f"output: {first!r}", highlight=False)
    table = Table("what", "where", "figure", title=f"{stage_plan.model} across "
                  f"{' -> '.join(stage_plan.tiers)}")
    for row in m.rows():
        table.add_row(*row)
    console.print(table)


def bench_cmd(
    plan: Path = typer.Option(..., "--plan", help="plan JSON"),
    endpoints: str = typer.Option("", "--endpoints", help=_ENDPOINTS_HELP),
    requests: int = typer.Option(50, "--requests", min=1),
    concurrency: int = typer.Option(1, "--concurrency", min=1),
    codec: str = typer.Option("raw", "--codec"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape"),
    tls_ca: Optional[Path] = _TLS_CA, client_cert: Optional[Path] = _CLIENT_CERT,
    client_key: Optional[Path] = _CLIENT_KEY, token_file: Optional[Path] = _TOKEN,
    server_name: Optional[str] = _SERVER_NAME,
    dashboard: Optional[str] = DASHBOARD, dashboard_log: Optional[Path] = DASHBOARD_LOG,
) -> None:
    """Send REQUESTS requests with CONCURRENCY in flight; print throughput and latency."""
    from ..runtime.stageplan import example_inputs

    feed = open_feed(dashboard, dashboard_log)  # first: a bad port fails before any work
    try:
        stage_plan = _load_plan(plan, input_shape)
        client = _client(stage_plan, endpoints, codec, _client_security(
            tls_ca, client_cert, client_key, token_file, server_name))
        if feed:
            data = json.loads(plan.read_text())  # tiercut plan --json has the bytes per hop
            plan_id = feed.plan(data if "hops" in data else stage_plan, "bench",
                                codecs=client.codecs)
            client.ainfer = _publishing(client.ainfer, lambda m: feed.request(m, plan_id))
        with client:
            result = client.bench(example_inputs(stage_plan), requests, concurrency)
    except TiercutError as exc:
        _fail(exc)
    finally:
        if feed:
            feed.close()
    lat = result.latency_s
    console.print(f"{result.requests} requests, concurrency {result.concurrency}: "
                  f"{result.throughput:.2f} req/s; latency ms mean {lat['mean'] * 1e3:.2f} "
                  f"p50 {lat['p50'] * 1e3:.2f} p90 {lat['p90'] * 1e3:.2f} "
                  f"p99 {lat['p99'] * 1e3:.2f}; fallbacks {result.fallbacks}", highlight=False)


def _publishing(ainfer: Any, publish: Any) -> Any:
    """``ainfer`` that hands each request's Measurement to ``publish`` as it completes (the
    bench calls the client's ``ainfer``: warm-up requests are published too)."""
    async def infer(*args: Any, **kwargs: Any) -> Any:
        output, m = await ainfer(*args, **kwargs)
        publish(m)
        return output, m

    return infer


def _client(stage_plan: Any, endpoints: str, codec: str, security: Any, **options: Any) -> Any:
    """The SplitClient for `infer` and `bench`; a bad --codec or --endpoints exits with 2."""
    from .. import codecs
    from ..runtime.client import SplitClient

    eps = _endpoints(endpoints)
    try:
        codecs.parse_codec(codec)
        return SplitClient(stage_plan, eps, codec=codec, security=security, **options)
    except codecs.CodecError as exc:
        raise typer.BadParameter(f"--codec: {exc}") from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, no_args_is_help=True)
    app.command("serve")(serve_cmd)
    app.command("infer")(infer_cmd)
    app.command("bench")(bench_cmd)
    return app


if __name__ == "__main__":
    _app()()
