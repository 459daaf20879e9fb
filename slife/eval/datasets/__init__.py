"""eval/datasets"""
