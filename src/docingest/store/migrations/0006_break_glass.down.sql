DROP TABLE IF EXISTS docingest.break_glass_grants;
