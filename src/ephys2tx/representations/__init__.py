"""representations"""
