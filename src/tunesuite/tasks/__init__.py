"""Task specs. Each module builds a TaskSpec and registers it; the core never imports them."""
