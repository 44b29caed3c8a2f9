"""tinygpt.evals: result rows, eval suites (the file-ops gate; BFCL to come), the runner and the eval gate."""
