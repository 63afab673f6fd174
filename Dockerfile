# The tierline image: every role (router, tier workers, beat, flower, gateway, metrics, sim)
# runs from it. Built in two stages: a wheel of the project (a plain, non-editable install),
# then a slim runtime that runs as an unprivileged user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY tierline tierline
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TIERLINE_ENV=prod \
    TIERLINE_POLICY=/etc/tierline/policies/prod.yaml \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && groupadd --system --gid 10001 tierline \
    && useradd --system --uid 10001 --gid tierline --home-dir /var/lib/tierline \
       --shell /usr/sbin/nologin tierline \
    && mkdir -p /var/lib/tierline/jobs /var/lib/tierline/reports /var/lib/tierline/beat \
    && chown -R tierline:tierline /var/lib/tierline
# Policies are configuration, not code: TIERLINE_POLICY (or TIERLINE_ENV) picks one; mount
# your own over /etc/tierline/policies to change prices, tiers or limits.
COPY policies /etc/tierline/policies
WORKDIR /var/lib/tierline
USER tierline:tierline
EXPOSE 8080 5555 9108
CMD ["tierline", "--help"]
