"""tinygpt.router: specialist registry, routing policy and (opt-in) cloud escalation. Not built yet."""
