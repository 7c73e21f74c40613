"""What `tiercut infer` tells its user when something is off: what a plan file holds, what is
probably wrong when a tier call fails UNAVAILABLE and TLS is the likely cause, and the line on
stderr that makes a fallback to local compute visible."""
from __future__ import annotations

from typing import Any, Optional

from rich.console import Console

stderr = Console(stderr=True, highlight=False)
PLAN_HOLDS = ("a plan file holds one JSON object: what `tiercut plan --json` prints (with "
              "'route'), or a tiercut-stageplan/1 (with 'format', 'model', 'tiers', 'assignment')")


def tls_hint(reason: str, tls: bool) -> Optional[str]:
    """What is probably wrong, and the flags that fix it; None where TLS is not plausible."""
    text = reason.lower()
    if "unavailable" not in text:
        return None
    if not tls:
        if "socket closed" not in text:
            return None
        return ("the tier server closed the connection at once, as a TLS server does to a "
                "plaintext client: if the tier servers run with --tls-cert, give infer "
                "--tls-ca CA.pem (the CA that signed their certificates; with --token-file if "
                "they need a token)")
    if "wrong_version_number" in text:
        return ("the tier server does not speak TLS (started without --tls-cert?): drop "
                "--tls-ca, or start it with tiercut serve --tls-cert CERT.pem --tls-key KEY.pem")
    if "hostname verification" in text or "no match found for server name" in text:
        return ("the server's certificate does not name the host checked (the one in "
                "--endpoints, or --server-name): connect by a name the certificate holds, or "
                "give --server-name NAME with one")
    if "certificate" in text or "handshake" in text or "ssl" in text:
        return ("the TLS handshake failed: the server's certificate is not signed by the CA in "
                "--tls-ca (give the CA that signed the certificate of tiercut serve --tls-cert), "
                "or the server asks for a client certificate (give --client-cert and "
                "--client-key signed by its --client-ca)")
    return None


def tls_note(reason: str, tls: bool) -> None:
    """Print the hint, if any, for a call that failed with ``reason``."""
    hint = tls_hint(reason, tls)
    if hint:
        stderr.print(f"[yellow]probably TLS:[/yellow] {hint}")


def fallback_note(m: Any, tls: bool) -> None:
    """One line on stderr when the answer was computed locally (and the TLS hint if any)."""
    if not getattr(m, "fallback", False):
        return
    stderr.print(f"[yellow]fallback:[/yellow] the answer was computed locally on this device, "
                 f"not across the tiers, because {m.fallback_reason} (--no-fallback makes "
                 "this an error)")
    tls_note(m.fallback_reason, tls)
