"""A library over the platform: the clients of the outside systems several services call. `crm`
looks customers up (the classifier's tier, the escalator's packets); `claude` builds the Claude
client and names its failures (the classifier's assist, the drafter). `settings` holds their knobs."""
