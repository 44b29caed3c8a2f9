"""tinygpt.router: the registry view of the model store, the routing policy (a calibrated classifier over domains,
thresholds, the cascade), and opt-in remote and cloud backends. See docs/router.md."""
