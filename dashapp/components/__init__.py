"""Reusable layout builders (KPI cards, the pair panel, the markets symbol card)."""
