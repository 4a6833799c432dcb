"""The gateway's settings: its HTTP and SMTP listeners and what they accept."""

from __future__ import annotations

from supportflow.settings import ChannelSettings


class GatewaySettings(ChannelSettings):
    gateway_http_port: int = 8088
    # HMAC-SHA256 secret for webhook signatures (X-Supportflow-Signature); empty disables the check.
    gateway_webhook_secret: str = ""
    gateway_max_body_bytes: int = 256 * 1024
    # A helpdesk's webhook carries the ticket's description and its latest comment, as HTML and
    # escaped twice over: a long ticket is cut and flagged at intake, not refused (the helpdesk
    # would not send it again, and the customer would never hear back).
    gateway_max_webhook_bytes: int = 4 * 1024 * 1024
    # Inbound mail (SMTP) for the tenants' support mailboxes; 0: no SMTP listener.
    gateway_smtp_port: int = 0
    gateway_smtp_host: str = "0.0.0.0"
    # A mail larger than this is refused at SMTP time (552); attachments are counted, never kept.
    gateway_max_mail_bytes: int = 10 * 1024 * 1024
