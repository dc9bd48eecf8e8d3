"""Declared hardware profiles (YAML data). See sparsebench.hardware for detection and matching."""
