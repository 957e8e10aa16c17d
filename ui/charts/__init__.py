"""The app's Altair charts and word shading, one module per tab, drawn from what ``wlm`` computes."""
