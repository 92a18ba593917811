"""Benchmarks behind ``symphony bench ...``; each writes JSON and a markdown table."""
