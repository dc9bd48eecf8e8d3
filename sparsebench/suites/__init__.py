"""Task suites: versioned suite definitions (YAML data) and the task code that runs them."""
