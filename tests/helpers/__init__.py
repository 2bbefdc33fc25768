"""What several test modules share: plain functions, values and classes (fixtures live in
conftest.py). Import them as `tests.helpers.NAME`.
"""
