"""The study engine: settings and presets, cell sources, steps, outputs, and the runs
`ephys2tx reproduce` (public tables) and `ephys2tx demo` (SYNTHETIC cohort)."""
