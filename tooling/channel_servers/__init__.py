"""Local stand-ins for the helpdesks Supportflow talks to (docs/channels.md): Zendesk (with its Help
Center), Intercom, Freshdesk, a mail server, and the receiver of the API channel's callback.

One child process serves them all on loopback; `ChannelServers` starts and stops it, reads what
each server received (`/_sim/`), sets faults, and acts as a customer through each provider's own
API, which then calls the gateway's webhook for the tenant, signed as the provider signs.

    servers = ChannelServers(ChannelServersConfig(tenants=(accounts,), state_dir="/tmp/cs"))
    servers.start()
    ticket = servers.zendesk_create_ticket("demo-bank", subject="Card", body="My card is lost",
                                           requester_email="ana@example.com", requester_name="Ana")
    servers.deliveries("zendesk", ticket)   # what Supportflow posted back
    servers.stop()

Module by module: config (what the servers are told), process (the parent side), __main__ (the
child), zendesk + help_center, intercom, freshdesk, mail, api_callback, webhooks (signing and
firing), store (received requests, deliveries, faults), control_api (/_sim/ and the recording
wrapper), markup (HTML <-> text).
"""

from tooling.channel_servers.config import ChannelServersConfig, TenantAccounts
from tooling.channel_servers.process import ChannelServers, ChannelServersError

__all__ = ["ChannelServers", "ChannelServersConfig", "ChannelServersError", "TenantAccounts"]
