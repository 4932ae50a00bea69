"""Detect: rules, temporal-graph miners and models behind one interface, producing alerts."""

from tianluo.detect.base import DetectInput, Detector, FeatureExtractor, alert_id, finish_alerts

__all__ = ["DetectInput", "Detector", "FeatureExtractor", "alert_id", "finish_alerts"]
