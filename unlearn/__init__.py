"""unlearn"""
