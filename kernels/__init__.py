"""tinygpt.kernels: hand-written compute kernels (WGSL for the browser path). Not built yet."""
