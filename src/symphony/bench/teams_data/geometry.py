"""Theme "geometry": 20 small plane-geometry functions, each with a docstring spec and a test (issue #21 workload).

Written for Symphony's teams bench; each ``def name`` is one sub-task (its docstring is the spec an
agent gets, its body our reference) and ``test_name`` right after it is the sub-task's test. Points
are (x, y) tuples of floats.
"""

import math


def distance(p: tuple, q: tuple) -> float:
    """Euclidean distance between points p and q."""
    return math.hypot(q[0] - p[0], q[1] - p[1])


def test_distance():
    assert distance((0, 0), (3, 4)) == 5.0


def midpoint(p: tuple, q: tuple) -> tuple:
    """The point halfway between p and q."""
    return ((p[0] + q[0]) / 2, (p[1] + q[1]) / 2)


def test_midpoint():
    assert midpoint((0, 0), (2, -4)) == (1.0, -2.0)


def polygon_area(points: list) -> float:
    """Area of a simple polygon given by its vertices in order (shoelace formula), always >= 0."""
    s = sum(points[i][0] * points[(i + 1) % len(points)][1] - points[(i + 1) % len(points)][0] * points[i][1]
            for i in range(len(points)))
    return abs(s) / 2


def test_polygon_area():
    assert polygon_area([(0, 0), (4, 0), (4, 3), (0, 3)]) == 12.0
    assert polygon_area([(0, 0), (0, 3), (4, 0)]) == 6.0


def perimeter(points: list) -> float:
    """Perimeter of the closed polygon through points in order."""
    return sum(math.dist(points[i], points[(i + 1) % len(points)]) for i in range(len(points)))


def test_perimeter():
    assert perimeter([(0, 0), (3, 0), (3, 4)]) == 12.0


def orientation(a: tuple, b: tuple, c: tuple) -> int:
    """1 if a, b, c turn counter-clockwise, -1 if clockwise, 0 if collinear."""
    cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return (cross > 0) - (cross < 0)


def test_orientation():
    assert orientation((0, 0), (1, 0), (1, 1)) == 1
    assert orientation((0, 0), (1, 1), (2, 2)) == 0


def segments_intersect(p1: tuple, p2: tuple, q1: tuple, q2: tuple) -> bool:
    """True if closed segments p1-p2 and q1-q2 share at least one point."""
    def turn(a, b, c):
        cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        return (cross > 0) - (cross < 0)

    def on(a, b, c):
        return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    d1, d2, d3, d4 = turn(q1, q2, p1), turn(q1, q2, p2), turn(p1, p2, q1), turn(p1, p2, q2)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True
    return any(d == 0 and on(a, b, c) for d, a, b, c in
               ((d1, q1, q2, p1), (d2, q1, q2, p2), (d3, p1, p2, q1), (d4, p1, p2, q2)))


def test_segments_intersect():
    assert segments_intersect((0, 0), (2, 2), (0, 2), (2, 0))
    assert not segments_intersect((0, 0), (1, 0), (0, 1), (1, 1))
    assert segments_intersect((0, 0), (2, 0), (2, 0), (3, 5))


def point_in_polygon(point: tuple, polygon: list) -> bool:
    """True if point lies strictly inside the simple polygon (ray casting); points on edges may go either way."""
    x, y = point
    inside = False
    for i in range(len(polygon)):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % len(polygon)]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def test_point_in_polygon():
    square = [(0, 0), (4, 0), (4, 4), (0, 4)]
    assert point_in_polygon((2, 2), square)
    assert not point_in_polygon((5, 2), square)


def convex_hull(points: list) -> list:
    """Convex hull vertices in counter-clockwise order starting from the lowest-x (then lowest-y) point;
    collinear points on the hull are left out."""
    pts = sorted(set(points))
    if len(pts) < 3:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    upper: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def test_convex_hull():
    pts = [(0, 0), (2, 0), (1, 1), (2, 2), (0, 2), (1, 0)]
    assert convex_hull(pts) == [(0, 0), (2, 0), (2, 2), (0, 2)]


def centroid(points: list) -> tuple:
    """The arithmetic mean of points."""
    n = len(points)
    return (sum(p[0] for p in points) / n, sum(p[1] for p in points) / n)


def test_centroid():
    assert centroid([(0, 0), (2, 0), (1, 3)]) == (1.0, 1.0)


def rotate(point: tuple, degrees: float) -> tuple:
    """point rotated counter-clockwise about the origin by degrees, each coordinate rounded to 9 places."""
    r = math.radians(degrees)
    x, y = point
    return (round(x * math.cos(r) - y * math.sin(r), 9), round(x * math.sin(r) + y * math.cos(r), 9))


def test_rotate():
    assert rotate((1, 0), 90) == (0.0, 1.0)
    assert rotate((1, 1), 180) == (-1.0, -1.0)


def circle_area(radius: float) -> float:
    """Area of a circle of the given radius; raise ValueError for a negative radius."""
    if radius < 0:
        raise ValueError("negative radius")
    return math.pi * radius * radius


def test_circle_area():
    assert abs(circle_area(2) - 12.566370614359172) < 1e-12
    try:
        circle_area(-1)
    except ValueError:
        pass
    else:
        raise AssertionError("no ValueError")


def triangle_type(a: float, b: float, c: float) -> str:
    """'invalid' unless the sides make a triangle with positive area, else 'equilateral', 'isosceles' or 'scalene'."""
    x, y, z = sorted((a, b, c))
    if x <= 0 or x + y <= z:
        return "invalid"
    return "equilateral" if x == z else "isosceles" if x == y or y == z else "scalene"


def test_triangle_type():
    assert triangle_type(2, 2, 2) == "equilateral"
    assert triangle_type(3, 4, 5) == "scalene"
    assert triangle_type(1, 2, 3) == "invalid"
    assert triangle_type(2, 2, 3) == "isosceles"


def line_through(p: tuple, q: tuple) -> tuple:
    """Coefficients (a, b, c) of the line a*x + b*y = c through distinct points p and q, with a = q.y - p.y
    and b = p.x - q.x."""
    a, b = q[1] - p[1], p[0] - q[0]
    return (a, b, a * p[0] + b * p[1])


def test_line_through():
    assert line_through((0, 0), (1, 1)) == (1, -1, 0)


def line_intersection(l1: tuple, l2: tuple) -> tuple | None:
    """Intersection point of lines given as (a, b, c) for a*x + b*y = c, or None if they are parallel."""
    det = l1[0] * l2[1] - l2[0] * l1[1]
    if det == 0:
        return None
    return ((l1[2] * l2[1] - l2[2] * l1[1]) / det, (l1[0] * l2[2] - l2[0] * l1[2]) / det)


def test_line_intersection():
    assert line_intersection((1, -1, 0), (1, 1, 2)) == (1.0, 1.0)
    assert line_intersection((1, 1, 0), (2, 2, 5)) is None


def bounding_box(points: list) -> tuple:
    """(min_x, min_y, max_x, max_y) of points."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return (min(xs), min(ys), max(xs), max(ys))


def test_bounding_box():
    assert bounding_box([(1, 5), (-2, 3), (4, -1)]) == (-2, -1, 4, 5)


def point_segment_distance(p: tuple, a: tuple, b: tuple) -> float:
    """Shortest distance from point p to the closed segment a-b."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    if dx == dy == 0:
        return math.dist(p, a)
    t = max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / (dx * dx + dy * dy)))
    return math.dist(p, (a[0] + t * dx, a[1] + t * dy))


def test_point_segment_distance():
    assert point_segment_distance((1, 1), (0, 0), (2, 0)) == 1.0
    assert point_segment_distance((3, 4), (0, 0), (0, 0)) == 5.0
    assert point_segment_distance((5, 0), (0, 0), (2, 0)) == 3.0


def is_convex(points: list) -> bool:
    """True if the polygon through points (in order, at least 3, no repeated points) is convex."""
    signs = set()
    n = len(points)
    for i in range(n):
        a, b, c = points[i], points[(i + 1) % n], points[(i + 2) % n]
        cross = (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0])
        if cross:
            signs.add(cross > 0)
    return len(signs) <= 1


def test_is_convex():
    assert is_convex([(0, 0), (2, 0), (2, 2), (0, 2)])
    assert not is_convex([(0, 0), (2, 0), (1, 1), (2, 2), (0, 2)])


def scale_polygon(points: list, factor: float) -> list:
    """points scaled by factor about their centroid."""
    cx = sum(p[0] for p in points) / len(points)
    cy = sum(p[1] for p in points) / len(points)
    return [(cx + (x - cx) * factor, cy + (y - cy) * factor) for x, y in points]


def test_scale_polygon():
    assert scale_polygon([(0, 0), (2, 0), (2, 2), (0, 2)], 2) == [(-1.0, -1.0), (3.0, -1.0), (3.0, 3.0), (-1.0, 3.0)]


def angle_between(u: tuple, v: tuple) -> float:
    """The angle between non-zero vectors u and v in degrees, in [0, 180], rounded to 6 places."""
    return round(abs(math.degrees(math.atan2(u[0] * v[1] - u[1] * v[0], u[0] * v[0] + u[1] * v[1]))), 6)


def test_angle_between():
    assert angle_between((1, 0), (0, 5)) == 90.0
    assert angle_between((1, 1), (-1, -1)) == 180.0


def closest_pair_distance(points: list) -> float:
    """The smallest distance between two of the given points (at least two)."""
    return min(math.dist(p, q) for i, p in enumerate(points) for q in points[i + 1:])


def test_closest_pair_distance():
    assert closest_pair_distance([(0, 0), (5, 5), (1, 0), (9, 9)]) == 1.0
