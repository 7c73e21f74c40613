"""Who may talk to a tier server: TLS credentials, a bearer token checked on every RPC.

Server side: ``ServerSecurity(cert, key, client_ca, token)`` (PEM bytes; ``from_files`` reads
them). With ``client_ca`` the server asks for and checks a client certificate (mutual TLS).
With ``token`` every RPC must carry ``authorization: Bearer <token>``; the check is
``hmac.compare_digest``, and a missing or wrong token is answered UNAUTHENTICATED before the
handler runs. Without TLS a server binds only to a loopback address unless forced
(``check_bind``).

Client side: ``ClientSecurity(ca, cert, key, token)``; ``open_channel(endpoint, security,
options)`` gives a grpc.aio channel, TLS when ``ca`` is set; ``metadata(security, client_id)``
is what every call on it sends (the token and this client's id). Tier servers forwarding to the
next tier use a ClientSecurity too.
"""
from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import grpc

from ..errors import TiercutError

TOKEN_HEADER = "authorization"
CLIENT_ID_HEADER = "tiercut-client-id"  # see server.py: requests per client are bounded by it


class SecurityError(TiercutError, ValueError):
    """A credential that cannot be used (missing file, TLS half configured, unsafe bind)."""


def _read(path: str | Path | None, what: str) -> bytes | None:
    if path is None or path == "":
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SecurityError(f"{what} {str(path)!r}: {exc.strerror}") from None


def read_token(path: str | Path | None) -> str | None:
    """The token in a file (surrounding whitespace dropped); refuses an empty one."""
    data = _read(path, "--token-file")
    if data is None:
        return None
    token = data.decode("utf-8", "strict").strip()
    if not token:
        raise SecurityError(f"--token-file {str(path)!r} is empty; put a long random token "
                            "in it, e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`")
    return token


@dataclass(frozen=True)
class ServerSecurity:
    cert: bytes | None = None  # PEM server certificate chain
    key: bytes | None = None  # PEM private key
    client_ca: bytes | None = None  # PEM CA for client certificates: mutual TLS when set
    token: str | None = None  # bearer token required on every RPC

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise SecurityError("TLS needs both --tls-cert and --tls-key")
        if self.client_ca is not None and self.cert is None:
            raise SecurityError("--client-ca (mutual TLS) needs --tls-cert and --tls-key")

    @property
    def tls(self) -> bool:
        return self.cert is not None

    @classmethod
    def from_files(cls, cert: Any = None, key: Any = None, client_ca: Any = None,
                   token_file: Any = None) -> "ServerSecurity":
        return cls(_read(cert, "--tls-cert"), _read(key, "--tls-key"),
                   _read(client_ca, "--client-ca"), read_token(token_file))

    def credentials(self) -> grpc.ServerCredentials:
        assert self.cert is not None and self.key is not None
        return grpc.ssl_server_credentials([(self.key, self.cert)],
                                           root_certificates=self.client_ca,
                                           require_client_auth=self.client_ca is not None)

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        return [TokenInterceptor(self.token)] if self.token else []


@dataclass(frozen=True)
class ClientSecurity:
    ca: bytes | None = None  # PEM CA that signed the servers' certificates: TLS when set
    cert: bytes | None = None  # PEM client certificate, for servers that require mutual TLS
    key: bytes | None = None
    token: str | None = None
    server_name: str | None = None  # override the name checked against the certificate

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise SecurityError("a client certificate needs both the certificate and its key")
        if self.cert is not None and self.ca is None:
            raise SecurityError("a client certificate needs TLS: give the CA too (--tls-ca)")

    @property
    def tls(self) -> bool:
        return self.ca is not None

    @classmethod
    def from_files(cls, ca: Any = None, cert: Any = None, key: Any = None,
                   token_file: Any = None, server_name: str | None = None) -> "ClientSecurity":
        return cls(_read(ca, "--tls-ca"), _read(cert, "--client-cert"),
                   _read(key, "--client-key"), read_token(token_file), server_name)


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, security: ServerSecurity | None, insecure_bind: bool) -> None:
    """Plaintext listens on loopback only, unless forced (``--insecure-bind``)."""
    if (security is None or not security.tls) and not insecure_bind and not is_loopback(host):
        raise SecurityError(f"refusing to listen on {host!r} without TLS: anyone on that "
                            "network could send requests and read tensors. Give --tls-cert "
                            "and --tls-key, listen on 127.0.0.1, or force it with "
                            "--insecure-bind")


# --- server: the token check ------------------------------------------------------------------

async def _deny(message: str, continuation: Callable[[Any], Awaitable[Any]],
                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
    """A handler of the method's own kind (unary or stream) that refuses UNAUTHENTICATED."""
    async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    handler = await continuation(details)
    if handler is not None and handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Every RPC must carry ``authorization: Bearer <token>``; otherwise UNAUTHENTICATED."""

    def __init__(self, token: str):
        self._expected = token.encode()

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        given = None
        for key, value in details.invocation_metadata or ():
            if key == TOKEN_HEADER:
                given = value if isinstance(value, str) else value.decode("latin-1")
        if given is None:
            return await _deny(f"{details.method}: no bearer token; send metadata "
                               "'authorization: Bearer <token>' (SplitClient(token=...), "
                               "tiercut infer --token-file)", continuation, details)
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode("utf-8", "replace"), self._expected):
            return await _deny(f"{details.method}: wrong bearer token", continuation, details)
        return await continuation(details)


# --- client: channels --------------------------------------------------------------------------

def metadata(security: ClientSecurity | None,
             client_id: str = "") -> tuple[tuple[str, str], ...]:
    """What every call sends: the bearer token (when there is one) and the client's id.

    Callers pass it with each call rather than through a channel interceptor: grpc.aio runs an
    interceptor as an extra task per call, which cost about a tenth of a millisecond a request."""
    pairs = []
    if security is not None and security.token:
        pairs.append((TOKEN_HEADER, f"Bearer {security.token}"))
    if client_id:
        pairs.append((CLIENT_ID_HEADER, client_id))
    return tuple(pairs)


def open_channel(endpoint: str, security: ClientSecurity | None,
                 options: list[tuple[str, Any]], sync: bool = False) -> Any:
    """A grpc.aio channel to ``endpoint`` (a blocking grpc one when ``sync``), TLS when
    ``security.ca``; send ``metadata(...)`` with every call on it."""
    lib = grpc if sync else grpc.aio
    if security is not None and security.tls:
        creds = grpc.ssl_channel_credentials(security.ca, security.key, security.cert)
        opts = list(options)
        if security.server_name:
            opts.append(("grpc.ssl_target_name_override", security.server_name))
        return lib.secure_channel(endpoint, creds, options=opts)
    return lib.insecure_channel(endpoint, options=options)
