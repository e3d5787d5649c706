"""Metrics: degradation estimation (type accuracy, MAE, SROCC, PCC) and image quality."""
