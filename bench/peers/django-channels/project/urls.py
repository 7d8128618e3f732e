from django.urls import path

from project import views

urlpatterns = [
    path("api/server/publish", views.publish),
    path("healthz", views.healthz),
]
