"""The stores every process shares: the absorber's budgets and request counters."""
