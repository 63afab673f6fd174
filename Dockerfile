# The tierline image: every role (router, tier workers, beat, flower, sim) runs from it.
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir -e .
ENV TIERLINE_ENV=prod
CMD ["tierline", "--help"]
