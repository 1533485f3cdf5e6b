"""One router per resource: health, items, events, recommendations, search."""
