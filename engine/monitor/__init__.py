"""The performance monitor: timings, percentiles, resources, bottlenecks, recommendations."""
