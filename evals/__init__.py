"""tinygpt.evals: BFCL harness, file-ops gate and the eval gate. Not built yet."""
