DROP TABLE IF EXISTS docingest.circuit_breakers;
DROP TABLE IF EXISTS docingest.rate_budgets;
