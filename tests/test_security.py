"""TLS, mutual TLS and the bearer token: the right setup works, everything else is refused.

Certificates are made here with ``cryptography`` (a CA, a server certificate for 127.0.0.1 and
localhost, a client certificate, and a second, untrusted CA). Traffic stays on loopback.
"""
import datetime
import ipaddress
import os
import subprocess
import sys

import grpc
import pytest

pytest.importorskip("cryptography")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from tiercut.runtime import tiercut_pb2 as pb  # noqa: E402
from tiercut.runtime import tiercut_pb2_grpc as pb_grpc  # noqa: E402
from tiercut.runtime.client import RemoteError, SplitClient  # noqa: E402
from tiercut.runtime.security import (ClientSecurity, SecurityError, ServerSecurity,  # noqa: E402
                                      check_bind, is_loopback)
from tiercut.runtime.launch import serve_in_thread  # noqa: E402
from tiercut.runtime.server import TierServer  # noqa: E402
from tiercut.runtime.stageplan import StagePlan  # noqa: E402

from assignments import assert_same  # noqa: E402
from test_runtime import SKIP, SKIPPY, TIERS, whole  # noqa: E402

pytestmark = pytest.mark.slow
TOKEN = "s3cret-token-0123456789abcdef"


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, key, issuer, issuer_key, ca=False, sans=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(obj):
    if hasattr(obj, "private_bytes"):
        return obj.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return obj.public_bytes(serialization.Encoding.PEM)


def make_pki():
    """{'ca', 'server_cert', 'server_key', 'client_cert', 'client_key', 'other_ca',
    'other_client_cert', 'other_client_key'} as PEM bytes."""
    out = {}
    for prefix in ("", "other_"):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert(f"{prefix}tiercut test CA", ca_key, f"{prefix}tiercut test CA", ca_key,
                   ca=True)
        out[f"{prefix}ca"] = _pem(ca)
        for who, sans in (("server", (x509.DNSName("localhost"),
                                      x509.IPAddress(ipaddress.ip_address("127.0.0.1")))),
                          ("client", (x509.DNSName("device-1"),))):
            key = ec.generate_private_key(ec.SECP256R1())
            out[f"{prefix}{who}_cert"] = _pem(_cert(f"{prefix}{who}", key,
                                                    f"{prefix}tiercut test CA", ca_key,
                                                    sans=sans))
            out[f"{prefix}{who}_key"] = _pem(key)
    return out


@pytest.fixture(scope="module")
def pki():
    return make_pki()


def _health(endpoint, creds=None, token=None, timeout=5):
    channel = (grpc.secure_channel(endpoint, creds) if creds else
               grpc.insecure_channel(endpoint))
    with channel:
        md = (("authorization", f"Bearer {token}"),) if token is not None else None
        return pb_grpc.TierServerStub(channel).Health(pb.HealthRequest(), timeout=timeout,
                                                      metadata=md)


def _refused(endpoint, creds=None, token=None):
    with pytest.raises(grpc.RpcError) as info:
        _health(endpoint, creds, token)
    return info.value


@pytest.fixture(scope="module")
def tls_server(pki):
    security = ServerSecurity(pki["server_cert"], pki["server_key"], token=TOKEN)
    with serve_in_thread([SKIPPY], security=security) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(pki):
    security = ServerSecurity(pki["server_cert"], pki["server_key"], client_ca=pki["ca"],
                              token=TOKEN)
    with serve_in_thread([SKIPPY], security=security) as server:
        yield server


def test_right_token_and_certificate_is_served(pki, tls_server):
    reply = _health(tls_server.endpoint, grpc.ssl_channel_credentials(pki["ca"]), TOKEN)
    assert reply.status == pb.HealthReply.SERVING


@pytest.mark.parametrize("token, message", [(None, "no bearer token"),
                                            ("wrong", "wrong bearer token"),
                                            (TOKEN + "x", "wrong bearer token"),
                                            ("", "wrong bearer token")])
def test_missing_or_wrong_token_is_unauthenticated(pki, tls_server, token, message):
    err = _refused(tls_server.endpoint, grpc.ssl_channel_credentials(pki["ca"]), token)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert message in err.details()


def test_token_is_checked_on_every_rpc(pki, tls_server):
    with grpc.secure_channel(tls_server.endpoint, grpc.ssl_channel_credentials(pki["ca"])) as ch:
        stub = pb_grpc.TierServerStub(ch)
        for call, req in ((stub.Prepare, pb.PrepareRequest(plan_json="{}")),
                          (stub.Infer, pb.InferRequest(plan_id="x")),
                          (stub.Load, pb.LoadRequest())):
            with pytest.raises(grpc.RpcError) as info:
                call(req, timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_untrusted_server_certificate_is_refused(pki, tls_server):
    err = _refused(tls_server.endpoint, grpc.ssl_channel_credentials(pki["other_ca"]), TOKEN)
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_plaintext_against_tls_server_is_refused(tls_server):
    err = _refused(tls_server.endpoint, None, TOKEN)
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_needs_a_trusted_client_certificate(pki, mtls_server):
    good = grpc.ssl_channel_credentials(pki["ca"], pki["client_key"], pki["client_cert"])
    assert _health(mtls_server.endpoint, good, TOKEN).status == pb.HealthReply.SERVING
    for creds in (grpc.ssl_channel_credentials(pki["ca"]),  # no client certificate
                  grpc.ssl_channel_credentials(pki["ca"], pki["other_client_key"],
                                               pki["other_client_cert"])):  # untrusted one
        assert _refused(mtls_server.endpoint, creds, TOKEN).code() == \
            grpc.StatusCode.UNAVAILABLE


def test_split_client_over_mutual_tls_with_forwarding(pki):
    """device -> edge -> cloud, every hop mutual TLS with the token; bit for bit."""
    _, x, expected = whole(SKIPPY)
    server_sec = ServerSecurity(pki["server_cert"], pki["server_key"], pki["ca"], TOKEN)
    client_sec = ClientSecurity(pki["ca"], pki["client_cert"], pki["client_key"], TOKEN)
    with serve_in_thread([SKIPPY], security=server_sec) as cloud, \
            serve_in_thread([SKIPPY], security=server_sec, forward_security=client_sec) as edge:
        plan = StagePlan.from_assignment(SKIPPY, SKIP, TIERS)
        with SplitClient(plan, [edge.endpoint, cloud.endpoint], security=client_sec) as client:
            out, m = client.infer(*x)
        assert_same(out, expected)
        assert not m.fallback and len(m.servers) == 2
        bad = ClientSecurity(pki["ca"], pki["client_cert"], pki["client_key"], "nope")
        with SplitClient(plan, [edge.endpoint, cloud.endpoint], security=bad,
                         fallback=False) as client:
            with pytest.raises(RemoteError, match="UNAUTHENTICATED.*wrong bearer token"):
                client.infer(*x)


def test_plaintext_client_against_a_tls_tier_finishes_locally(pki):
    _, x, expected = whole(SKIPPY)
    server_sec = ServerSecurity(pki["server_cert"], pki["server_key"], token=TOKEN)
    with serve_in_thread([SKIPPY], security=server_sec) as cloud, \
            serve_in_thread([SKIPPY], security=ServerSecurity(token=TOKEN)) as edge:
        plan = StagePlan.from_assignment(SKIPPY, SKIP, TIERS)
        plain = ClientSecurity(token=TOKEN)
        with SplitClient(plan, {"edge": edge.endpoint, "cloud": cloud.endpoint},
                         security=plain) as client:
            out, m = client.infer(*x)  # the client's Prepare of the cloud is plaintext: refused
        assert_same(out, expected)
        assert m.fallback and "UNAVAILABLE" in m.fallback_reason


def test_plaintext_server_refuses_non_loopback_bind():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    with pytest.raises(SecurityError, match="refusing to listen on '0.0.0.0' without TLS"):
        TierServer([SKIPPY], host="0.0.0.0")
    check_bind("0.0.0.0", None, insecure_bind=True)  # forced: allowed
    check_bind("0.0.0.0", ServerSecurity(b"c", b"k"), insecure_bind=False)  # TLS: allowed


def test_half_configured_tls_is_an_error():
    with pytest.raises(SecurityError, match="needs both --tls-cert and --tls-key"):
        ServerSecurity(cert=b"x")
    with pytest.raises(SecurityError, match="needs --tls-cert"):
        ServerSecurity(client_ca=b"x")
    with pytest.raises(SecurityError, match="needs TLS"):
        ClientSecurity(cert=b"c", key=b"k")


def test_cli_serve_with_tls_and_token(pki, tmp_path):
    """`tiercut serve --tls-cert --tls-key --client-ca --token-file` in a child process."""
    from tiercut.runtime.launch import spawn

    files = {}
    for name in ("server_cert", "server_key", "ca"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_bytes(pki[name])
    (tmp_path / "token").write_text(TOKEN + "\n")
    args = ["--tls-cert", str(files["server_cert"]), "--tls-key", str(files["server_key"]),
            "--client-ca", str(files["ca"]), "--token-file", str(tmp_path / "token")]
    with spawn([SKIPPY], env={"PYTHONPATH": "tests"}, extra_args=args) as server:
        assert any("tls=mutual token=True" in line for line in server.log)
        good = grpc.ssl_channel_credentials(pki["ca"], pki["client_key"], pki["client_cert"])
        assert _health(server.endpoint, good, TOKEN).status == pb.HealthReply.SERVING
        assert _refused(server.endpoint, good, "wrong").code() == \
            grpc.StatusCode.UNAUTHENTICATED
    done = subprocess.run([sys.executable, "-m", "tiercut.cli.serve", "serve", "--host",
                           "0.0.0.0", "--port", "0", "--models", SKIPPY],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": "tests"})
    assert done.returncode == 2 and "without TLS" in done.stdout + done.stderr


def _infer_cli(tls_server, tmp_path, pki, *args):
    """`tiercut infer` of a one-hop plan against the TLS tier server; stdout and stderr apart."""
    from typer.testing import CliRunner

    from tiercut.cli import app

    plan = StagePlan.from_assignment(SKIPPY, {n: min(t, 1) for n, t in SKIP.items()}, TIERS[:2])
    (tmp_path / "plan.json").write_text(plan.to_json())
    (tmp_path / "token").write_text(TOKEN)
    for name in ("ca", "other_ca"):
        (tmp_path / f"{name}.pem").write_bytes(pki[name])
    args = [a.replace("PKI/", f"{tmp_path}/") for a in args]
    return CliRunner().invoke(app, ["infer", "--plan", str(tmp_path / "plan.json"), "--endpoints",
                                    tls_server.endpoint, "--token-file", str(tmp_path / "token"),
                                    *args])


@pytest.mark.parametrize("args, hint", [
    ([], "as a TLS server does to a plaintext client"),  # before: silent, exit 0
    (["--tls-ca", "PKI/other_ca.pem"], "not signed by the CA in --tls-ca"),
    (["--tls-ca", "PKI/ca.pem", "--server-name", "elsewhere"], "give --server-name NAME")])
def test_infer_says_what_is_probably_wrong_with_tls(pki, tls_server, tmp_path, args, hint):
    result = _infer_cli(tls_server, tmp_path, pki, *args)
    err = " ".join(result.stderr.split())
    assert result.exit_code == 0, result.output
    assert "fallback: the answer was computed locally on this device" in err, err
    assert "UNAVAILABLE" in err and "probably TLS:" in err and hint in err, err
    assert "--tls-ca" in err or "--server-name" in err
    result = _infer_cli(tls_server, tmp_path, pki, *args, "--no-fallback")
    err = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "answered UNAVAILABLE" in result.stdout, result.output
    assert "probably TLS:" in err and hint in err and "fallback:" not in err, err


def test_infer_with_the_right_ca_says_nothing_on_stderr(pki, tls_server, tmp_path):
    result = _infer_cli(tls_server, tmp_path, pki, "--tls-ca", "PKI/ca.pem")
    assert result.exit_code == 0, result.output
    assert "probably TLS" not in result.stderr and "fallback" not in result.stderr
    assert "FALLBACK" not in result.stdout and "edge compute" in result.stdout


def test_no_tls_hint_where_tls_is_not_plausible():
    from tiercut.cli.infer_help import tls_hint

    refused = ("Prepare on 127.0.0.1:1 (edge): UNAVAILABLE: failed to connect to all addresses;"
               " last error: UNKNOWN: ipv4:127.0.0.1:1: Failed to connect to remote host: "
               "Connection refused")
    assert tls_hint(refused, tls=False) is None and tls_hint(refused, tls=True) is None
    assert tls_hint("NOT_FOUND: model 'x' is not hosted", tls=False) is None
