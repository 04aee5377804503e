"""Model card templates (markdown with {{ placeholders }}), rendered by hf_fundamentals.integrations."""
