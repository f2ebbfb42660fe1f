"""Where exports come from (simulator, CSV folder, HTTP) and how they are parsed."""
