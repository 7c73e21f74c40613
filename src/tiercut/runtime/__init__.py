"""The runtime: split inference across real processes: tier servers over gRPC, the device client,
the stage backends. Imports tiercut.graph, codecs, zoo, decompose and errors; never
planner/adapt/sim/cli.

Server side: server.py (the handlers), stagecache, backends, admission, workers, forward,
dispatch, launch, parts (RunPart: one part of a divided layer range). Device side: client.py
(SplitClient), hosts, preparing, route, handover, fallback, hedge, measurement, bench, fanout
(FanOut: a layer range's parts on several servers at once, gathered). Both: transport, security, stream, wire, stageplan.

gRPC's transport: unless ``GRPC_EXPERIMENTS`` is set, importing this package turns off gRPC's
EventEngine client and listener, so that sockets are served by gRPC's older poller, which
answers on the thread that waits rather than handing each event to another thread. On
loopback that took a bare stream's 1 KiB round trip from 0.29 to 0.20 ms, and a 1 KiB hop of
tiercut's from 0.76 to 0.52 ms (``benchmarks/hop_overhead.py``). gRPC reads the variable when
it is first imported: a program that imports grpc before tiercut keeps gRPC's defaults.
"""
import os
from importlib import metadata

TRANSPORT_EXPERIMENTS = "-event_engine_client,-event_engine_listener"


def _transport_defaults() -> None:
    try:
        major = int(metadata.version("grpcio").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return
    if major == 1:  # the experiments are named so in grpcio 1.x (an unknown name is logged)
        os.environ.setdefault("GRPC_EXPERIMENTS", TRANSPORT_EXPERIMENTS)


_transport_defaults()
